"""The ``mendwell`` command: serve, db upgrade, user create, on-call, demo, probe."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from server.settings import Settings, SettingsError

if TYPE_CHECKING:
    import uvicorn

WS_HARD_MAX_BYTES = 1024 * 1024


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"mendwell: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server.migrate import upgrade

    settings = _settings()
    asyncio.run(upgrade(settings.database_url.get_secret_value()))
    print(f"database is up to date ({settings.database_kind})")
    return 0


async def _with_services(settings: Settings, job: object) -> object:
    from server.bus import LocalBus
    from server.db import create_engine, session_factory
    from server.services import Services

    engine = create_engine(settings.database_url.get_secret_value())
    services = Services(settings, engine, session_factory(engine), LocalBus())
    try:
        return await job(services)  # type: ignore[operator]
    finally:
        await services.close()


def cmd_demo(args: argparse.Namespace) -> int:
    _seed_demo(_settings())
    return 0


def _seed_demo(settings: Settings) -> None:
    from server.demo import seed
    from server.migrate import upgrade

    asyncio.run(upgrade(settings.database_url.get_secret_value()))
    password = settings.demo_password.get_secret_value() or None
    _print_demo(asyncio.run(_with_services(settings, lambda s: seed(s, password=password))))


def _print_demo(result: object) -> None:
    from server.demo import ACCOUNTS, DemoResult

    assert isinstance(result, DemoResult)
    print("Demo clinic ready. Sign in with any of:")
    for email, _, role in ACCOUNTS:
        print(f"  {email:<24} ({role.value})")
    # A generated password must be shown to be usable; one the operator chose is not
    # repeated into the server's output (which often ends up in a log).
    if result.password_generated:
        print(f"  password: {result.password}   (random, set MENDWELL_DEMO_PASSWORD to "
              "choose one)")
    else:
        print("  password: the one in MENDWELL_DEMO_PASSWORD")
    if result.on_call_until is not None:
        until = result.on_call_until.isoformat(timespec="minutes")
        print(f"  on call: coordinator@demo.test until {until} (the on-call rota, "
              "/admin/on-call)")


def cmd_user_create(args: argparse.Namespace) -> int:
    from server.accounts import create_user
    from server.errors import APIError
    from server.models import Role

    settings = _settings()
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password (empty for none): ") or None

    async def job(services: object) -> int:
        from server.services import Services

        assert isinstance(services, Services)
        async with services.transaction() as session:
            user = await create_user(session, None, email=args.email, name=args.name,
                                     role=Role(args.role), password=password,
                                     now=services.clock.now(), timezone=args.timezone)
            return user.id

    try:
        user_id = asyncio.run(_with_services(settings, job))
    except APIError as exc:
        print(f"mendwell: {exc.message}", file=sys.stderr)
        return 1
    print(f"created user {user_id} ({args.email}, {args.role})")
    return 0


# --- the on-call rota (server/oncall.py); the operator acts as the seeder does: actor None.


def _instant(value: str, name: str, now: datetime) -> datetime:
    from server.errors import ValidationFailed
    from server.http import in_range

    if value == "now":
        return now
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"--{name} must be an ISO 8601 date-time, for example "
                               "2026-12-01T08:00-05:00, or now.", field=name) from None
    if parsed.tzinfo is None:
        # A time without an offset is read differently by each server's zone.
        raise ValidationFailed(f"--{name} must include a UTC offset, for example "
                               "2026-12-01T08:00-05:00.", field=name)
    return in_range(parsed, f"--{name}")


def _shift_id(value: str) -> int:
    # Ids are 32-bit columns: a larger number would fail in the database driver.
    if not (value.isascii() and value.isdigit()) or not 0 < int(value[:11]) < 2**31:
        raise argparse.ArgumentTypeError(f"not a shift id: {value!r}")
    return int(value)


def _shift_line(shift: object, zone: str) -> str:
    from zoneinfo import ZoneInfo

    from server.oncall import Shift

    assert isinstance(shift, Shift)
    tz = ZoneInfo(zone)
    return (f"{shift.id:>5}  {shift.user.email:<28} {shift.user.role.value:<12} "
            f"{shift.starts_at.astimezone(tz).isoformat(timespec='minutes')}  "
            f"{shift.ends_at.astimezone(tz).isoformat(timespec='minutes')}  "
            f"{shift.status.value}{'' if shift.user.is_active else ' (deactivated)'}")


def _run_on_call(settings: Settings, job: object) -> int:
    from server.errors import APIError

    try:
        lines = asyncio.run(_with_services(settings, job))
    except APIError as exc:
        print(f"mendwell: {exc.message}", file=sys.stderr)
        return 1
    assert isinstance(lines, list)
    for line in lines:
        print(line)
    return 0


def cmd_on_call_add(args: argparse.Namespace) -> int:
    settings = _settings()

    async def job(services: object) -> list[str]:
        from server import oncall
        from server.services import Services

        assert isinstance(services, Services)
        now = services.clock.now()
        starts_at = _instant(args.start, "from", now)
        ends_at = _instant(args.until, "until", now)
        async with services.transaction() as session:
            user_id = await oncall.staff_id_by_email(session, args.email)
            shift = await oncall.add_shift(session, None, user_id=user_id, starts_at=starts_at,
                                           ends_at=ends_at, now=now)
        return [f"added shift {shift.id}: {shift.user.name} ({shift.user.role.value}) on "
                f"call from {shift.starts_at.isoformat(timespec='minutes')} until "
                f"{shift.ends_at.isoformat(timespec='minutes')}"]

    return _run_on_call(settings, job)


def cmd_on_call_list(args: argparse.Namespace) -> int:
    settings = _settings()

    async def job(services: object) -> list[str]:
        from server import oncall
        from server.services import Services

        assert isinstance(services, Services)
        now = services.clock.now()
        zone = settings.clinic_timezone
        async with services.transaction() as session:
            shifts = await oncall.list_shifts(session, None, now=now)
            on_call = await oncall.who_is_on_call(session, now)
        people = ", ".join(f"{o.user.name} <{o.user.email}>" for o in on_call)
        lines = [f"on call now: {people}" if on_call else "nobody is on call now"]
        lines += [f"{'id':>5}  {'who':<28} {'role':<12} {'from':<22}  {'until':<22}  status"]
        lines += [_shift_line(s, zone) for s in shifts]
        return lines

    return _run_on_call(settings, job)


def cmd_on_call_end(args: argparse.Namespace) -> int:
    settings = _settings()

    async def job(services: object) -> list[str]:
        from server import oncall
        from server.services import Services

        assert isinstance(services, Services)
        async with services.transaction() as session:
            shift = await oncall.end_shift(session, None, args.id, now=services.clock.now())
        what = "cancelled" if shift.status is oncall.ShiftStatus.cancelled else "ended"
        return [f"{what} shift {shift.id} ({shift.user.email})"]

    return _run_on_call(settings, job)


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int,
                   configure_logging: bool = True) -> uvicorn.Config:
    """How `mendwell serve` runs the app; the tests serve their app the same way."""
    import uvicorn

    from server.logs import uvicorn_log_config

    return uvicorn.Config(
        app, host=host, port=port, loop="uvloop", http="httptools",
        # uvicorn's WebSocket protocol on websockets' sans-I/O core, through plain ASGI.
        ws="websockets-sansio",
        # Per-message deflate costs about 4x the memory of an idle signaling socket.
        ws_per_message_deflate=False,
        # uvicorn fails the connection (1009) on a frame over ws_max_size, with no
        # chance to answer. The protocol's 64 KiB limit is enforced by the app, which
        # answers an error and keeps the socket; this is only the hard ceiling.
        ws_max_size=WS_HARD_MAX_BYTES,
        # Heartbeats: ping every interval, drop a socket silent for interval + timeout.
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_timeout_seconds,
        # X-Forwarded-For/-Proto believed from MENDWELL_TRUSTED_PROXIES only (uvicorn's
        # default trusts loopback, where a co-hosted client could claim any address and
        # so escape per-address sign-in throttling).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        log_level="info", server_header=False,
        log_config=uvicorn_log_config() if configure_logging else None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import create_app

    settings = _settings()
    if "FORWARDED_ALLOW_IPS" in os.environ:
        # uvicorn's own variable used to decide which proxies were believed; read no
        # more, it would leave a deployment behind a proxy seeing one client address.
        print("mendwell: FORWARDED_ALLOW_IPS is no longer read. Set MENDWELL_TRUSTED_PROXIES "
              f"to the proxy's address instead ({os.environ['FORWARDED_ALLOW_IPS']!r}).",
              file=sys.stderr)
        return 2
    if args.demo:
        _seed_demo(settings)
    signaling_port = args.signaling_port or settings.signaling_port or args.port + 1
    print(f"Mendwell on http://{args.host}:{args.port}, visit signaling on port "
          f"{signaling_port}  ({settings.env}, {settings.database_kind})",
          flush=True)
    import uvicorn

    app = create_app(settings, signaling_at=(args.host, signaling_port), http_port=args.port)
    uvicorn.Server(uvicorn_config(app, settings, host=args.host, port=args.port)).run()
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    # The one place server/ reaches into signaling/ besides app.py: lazily, so the rest
    # of the CLI does not load aiortc.
    from signaling.probe import probe

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else \
        getpass.getpass("Password: ")
    report = asyncio.run(probe(args.base_url, args.email, password, visit_id=args.visit,
                               relay=args.relay, within=args.timeout))
    for line in report.lines:
        print(line, file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mendwell", description="Mendwell telepsychiatry server")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--signaling-port", type=int, default=0,
                       help="visit signaling's own port (default: MENDWELL_SIGNALING_PORT, "
                            "else --port + 1)")
    serve.add_argument("--demo", action="store_true", help="migrate and seed the demo clinic")
    serve.set_defaults(func=cmd_serve)
    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    user = sub.add_parser("user", help="accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True,
                        choices=["patient", "prescriber", "coordinator", "admin"])
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    create.add_argument("--timezone", default=None,
                        help="patients: the IANA time zone they read times in, "
                             "for example America/Chicago")
    create.set_defaults(func=cmd_user_create)
    on_call = sub.add_parser("on-call", help="the on-call rota (who backs up every care team)")
    on_call_sub = on_call.add_subparsers(dest="on_call_command", required=True)
    add = on_call_sub.add_parser("add", help="put a prescriber or coordinator on call")
    add.add_argument("--email", required=True)
    add.add_argument("--from", dest="start", required=True,
                     help="ISO 8601 with a UTC offset, for example 2026-12-01T08:00-05:00, "
                          "or now")
    add.add_argument("--until", required=True, help="ISO 8601 with a UTC offset")
    add.set_defaults(func=cmd_on_call_add)
    on_call_sub.add_parser("list", help="who is on call now, and the shifts to come") \
        .set_defaults(func=cmd_on_call_list)
    end = on_call_sub.add_parser("end", help="end a running shift now, or cancel one to come")
    end.add_argument("--id", type=_shift_id, required=True, help="the shift's id (see list)")
    end.set_defaults(func=cmd_on_call_end)
    sub.add_parser("demo", help="migrate and seed the demo clinic").set_defaults(func=cmd_demo)
    probe = sub.add_parser("probe", help="place a synthetic call through a running deployment")
    probe.add_argument("--base-url", required=True, help="for example https://visits.example.org")
    probe.add_argument("--email", required=True, help="a staff account kept for probing")
    probe.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    probe.add_argument("--visit", type=int, default=None,
                       help="also call between two probe peers in this visit's room")
    probe.add_argument("--relay", action="store_true", help="force the TURN relay path")
    probe.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    probe.set_defaults(func=cmd_probe)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
