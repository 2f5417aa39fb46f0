"""Settings from the environment: parsing, the production secret key, documentation."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, get_origin

import pytest
from pydantic import SecretStr

from server.settings import MIN_SECRET_LENGTH, PLACEHOLDER_SECRETS, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]

# One raw value and what it parses to, per kind of field. A field of a new kind fails
# test_every_field_parses_from_the_environment until its parsing is added here and in
# server/settings.py.
SAMPLES: dict[str, tuple[str, Any]] = {
    "str": ("some text", "some text"),
    "int": ("4200", 4200),
    "float": ("2.5", 2.5),
    "bool": ("yes", True),
    "tuple[str, ...]": (" stun:a.test:3478, ,stun:b.test:3478 ",
                        ("stun:a.test:3478", "stun:b.test:3478")),
    "SecretStr": ("s3cr3t value", SecretStr("s3cr3t value")),
    "tuple[int, ...]": (" 48, ,2 ", (48, 2)),
}
# Fields whose value is checked: a sample of the right kind would not be accepted.
SPECIAL: dict[str, tuple[str, Any]] = {"env": ("production", "production"),
                                        "clinic_timezone": ("Europe/Dublin", "Europe/Dublin"),
                                        "ice_transport_policy": ("relay", "relay"),
                                        "phone_region": ("GB", "GB"),
                                        "telemedicine_flexibilities_end": (
                                            "2027-12-31", date(2027, 12, 31)),
                                        "signaling_url": ("wss://clinic.example",
                                                          "wss://clinic.example"),
                                        "trusted_proxies": (" 10.0.0.5, ,172.28.10.0/24 ",
                                                            ("10.0.0.5", "172.28.10.0/24"))}
# Other settings a field's value needs to be accepted.
NEEDS: dict[str, dict[str, str]] = {
    "ice_transport_policy": {"MENDWELL_TURN_URLS": "turn:turn.test:3478"},
    "device_check_max_seconds": {"MENDWELL_DEVICE_CHECK_SECONDS": "1"}}


def kind_of(name: str) -> str:
    annotation = Settings.model_fields[name].annotation
    return str(annotation) if get_origin(annotation) else getattr(annotation, "__name__", "")


class Environ:
    """Settings.from_env over exactly the given MENDWELL_ variables (the process's own
    are cleared for the test; pydantic-settings reads os.environ)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def __call__(self, environ: Mapping[str, str], **overrides: Any) -> Settings:
        for name in os.environ:
            if name.startswith("MENDWELL_"):
                self.monkeypatch.delenv(name)
        for name, value in environ.items():
            self.monkeypatch.setenv(name, value)
        return Settings.from_env(**overrides)


@pytest.fixture
def from_env(monkeypatch: pytest.MonkeyPatch) -> Environ:
    return Environ(monkeypatch)


def good_secret() -> str:
    return secrets.token_urlsafe(48)


def base_environ(tmp_path: Path, **values: str) -> dict[str, str]:
    environ = {"MENDWELL_ENV": "test", "MENDWELL_SECRET_KEY": good_secret(),
               "MENDWELL_VAR_DIR": str(tmp_path / "var"), "MENDWELL_TURN_SECRET": "turn"}
    environ.update(values)
    return environ


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_field_parses_from_the_environment(
    tmp_path: Path, name: str, from_env: Environ
) -> None:
    kind = kind_of(name)
    if name in SPECIAL:
        raw, expected = SPECIAL[name]
    elif kind == "Path":
        raw, expected = str(tmp_path / "elsewhere"), (tmp_path / "elsewhere").resolve()
    else:
        assert kind in SAMPLES, f"Settings.{name} has a type ({kind}) that no test parses"
        raw, expected = SAMPLES[kind]
    settings = from_env(base_environ(
        tmp_path, **{f"MENDWELL_{name.upper()}": raw, **NEEDS.get(name, {})}))
    value = getattr(settings, name)
    assert value == expected
    assert type(value) is type(expected)


def test_unset_variables_keep_the_defaults(tmp_path: Path, from_env: Environ) -> None:
    settings = from_env({"MENDWELL_ENV": "test", "MENDWELL_SECRET_KEY": good_secret(),
                                  "MENDWELL_VAR_DIR": str(tmp_path)})
    defaults = from_env({})
    for f in Settings.model_fields:
        if f not in ("env", "secret_key", "var_dir", "database_url"):
            assert getattr(settings, f) == getattr(defaults, f), f
    # The database defaults to a SQLite file under var_dir.
    database = f"sqlite+aiosqlite:///{tmp_path.resolve() / 'mendwell.db'}"
    assert settings.database_url.get_secret_value() == database


def test_relative_var_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_env: Environ
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = from_env(base_environ(tmp_path, MENDWELL_VAR_DIR="state"))
    assert settings.var_dir == tmp_path.resolve() / "state"


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", "on"])
def test_true_spellings(tmp_path: Path, raw: str, from_env: Environ) -> None:
    environ = base_environ(tmp_path, MENDWELL_RUN_BACKGROUND_TASKS=raw)
    assert from_env(environ).run_background_tasks is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF", ""])
def test_false_spellings(tmp_path: Path, raw: str, from_env: Environ) -> None:
    environ = base_environ(tmp_path, MENDWELL_RUN_BACKGROUND_TASKS=raw)
    assert from_env(environ).run_background_tasks is False


def test_empty_list_is_empty(tmp_path: Path, from_env: Environ) -> None:
    assert from_env(base_environ(tmp_path, MENDWELL_STUN_URLS="")).stun_urls == ()


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("MENDWELL_RUN_BACKGROUND_TASKS", "maybe", "must be true or false, not 'maybe'"),
    ("MENDWELL_MAX_BODY_BYTES", "lots", "must be a number, not 'lots'"),
    ("MENDWELL_MAX_BODY_BYTES", "1.5", "must be a number, not '1.5'"),
    ("MENDWELL_OUTBOX_POLL_SECONDS", "soon", "must be a number, not 'soon'"),
    ("MENDWELL_ENV", "staging", "must be one of development, test, production"),
])
def test_bad_values_name_the_variable(
    tmp_path: Path, name: str, raw: str, message: str, from_env: Environ) -> None:
    with pytest.raises(SettingsError) as raised:
        from_env(base_environ(tmp_path, **{name: raw}))
    assert name in str(raised.value)
    assert message in str(raised.value)


def test_turn_urls_need_the_turn_secret(tmp_path: Path, from_env: Environ) -> None:
    environ = base_environ(tmp_path, MENDWELL_TURN_URLS="turn:turn.test:3478")
    del environ["MENDWELL_TURN_SECRET"]
    with pytest.raises(SettingsError, match="MENDWELL_TURN_SECRET"):
        from_env(environ)


def test_phone_region_must_be_one_phone_numbers_knows(tmp_path: Path, from_env: Environ) -> None:
    for bad in ("", "XX", "usa", "us"):
        with pytest.raises(SettingsError, match="MENDWELL_PHONE_REGION"):
            from_env(base_environ(tmp_path, MENDWELL_PHONE_REGION=bad))


def test_ice_transport_policy_is_all_or_relay_and_relay_needs_turn(
    tmp_path: Path, from_env: Environ
) -> None:
    assert from_env(base_environ(tmp_path)).ice_transport_policy == "all"
    with pytest.raises(SettingsError, match="MENDWELL_ICE_TRANSPORT_POLICY must be one of "
                                            "all, relay, not 'turn-only'"):
        from_env(base_environ(tmp_path, MENDWELL_ICE_TRANSPORT_POLICY="turn-only"))
    with pytest.raises(SettingsError, match="MENDWELL_TURN_URLS is not set"):
        from_env(base_environ(tmp_path, MENDWELL_ICE_TRANSPORT_POLICY="relay"))


def test_signaling_url_is_a_websocket_origin_and_the_port_a_port(
    tmp_path: Path, from_env: Environ
) -> None:
    for bad in ("https://clinic.example", "clinic.example", "ftp://x"):
        with pytest.raises(SettingsError, match="MENDWELL_SIGNALING_URL must start with"):
            from_env(base_environ(tmp_path, MENDWELL_SIGNALING_URL=bad))
    for bad in ("-1", "65536"):
        with pytest.raises(SettingsError, match="MENDWELL_SIGNALING_PORT must be a port"):
            from_env(base_environ(tmp_path, MENDWELL_SIGNALING_PORT=bad))
    assert from_env(base_environ(tmp_path)).signaling_port == 0


def test_the_device_checks_server_deadline_comes_after_the_pages_check(
    tmp_path: Path, from_env: Environ
) -> None:
    settings = from_env(base_environ(tmp_path))
    assert (settings.device_check_seconds, settings.device_check_max_seconds) == (10, 15)
    for seconds, deadline in (("10", "10"), ("12", "10"), ("0", "15")):
        with pytest.raises(SettingsError, match="MENDWELL_DEVICE_CHECK_SECONDS must be"):
            from_env(base_environ(tmp_path, MENDWELL_DEVICE_CHECK_SECONDS=seconds,
                                  MENDWELL_DEVICE_CHECK_MAX_SECONDS=deadline))


def test_overrides_win_over_the_environment(tmp_path: Path, from_env: Environ) -> None:
    settings = from_env(base_environ(tmp_path, MENDWELL_MAX_BODY_BYTES="10"),
                                 max_body_bytes=20)
    assert settings.max_body_bytes == 20


# --- the secret key -----------------------------------------------------------------


@pytest.mark.parametrize("key", [
    None, "", "   ", "change-me", "CHANGEME", " secret ", "your-secret-key",
    *sorted(PLACEHOLDER_SECRETS - {""}),
    "x" * (MIN_SECRET_LENGTH - 1),
])
def test_production_refuses_a_missing_placeholder_or_short_key(
    tmp_path: Path, key: str | None, from_env: Environ) -> None:
    environ = base_environ(tmp_path, MENDWELL_ENV="production")
    if key is None:
        del environ["MENDWELL_SECRET_KEY"]
    else:
        environ["MENDWELL_SECRET_KEY"] = key
    with pytest.raises(SettingsError) as raised:
        from_env(environ)
    message = str(raised.value)
    assert "MENDWELL_SECRET_KEY" in message
    assert f"at least {MIN_SECRET_LENGTH} characters" in message
    assert "secrets.token_urlsafe" in message  # says how to make one
    # A production key is never invented and written to disk.
    assert not (tmp_path / "var" / "secret_key").exists()


def test_production_accepts_a_real_key(tmp_path: Path, from_env: Environ) -> None:
    key = good_secret()
    settings = from_env(base_environ(tmp_path, MENDWELL_ENV="production",
                                              MENDWELL_SECRET_KEY=key))
    assert settings.secret_key.get_secret_value() == key
    assert settings.is_production and settings.secure_cookies
    assert not (tmp_path / "var" / "secret_key").exists()


def _environ_without_mendwell(**values: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MENDWELL_")}
    environ.update(values)
    return environ


def test_serve_in_production_without_a_key_exits_with_the_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "9"],
        env=_environ_without_mendwell(MENDWELL_ENV="production",
                                      MENDWELL_VAR_DIR=str(tmp_path / "var")),
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    assert "MENDWELL_SECRET_KEY is missing or a placeholder" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Mendwell on http" not in result.stdout  # it never started serving


def test_development_generates_and_keeps_a_key(tmp_path: Path, from_env: Environ) -> None:
    var = tmp_path / "var"
    environ = {"MENDWELL_ENV": "development", "MENDWELL_VAR_DIR": str(var)}
    first = from_env(environ)
    path = var / "secret_key"
    assert len(first.secret_key.get_secret_value()) >= MIN_SECRET_LENGTH
    assert path.read_text().strip() == first.secret_key.get_secret_value()
    # Only the server's user may read it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A restart keeps everyone's sessions and links valid.
    assert from_env(environ).secret_key == first.secret_key
    # An explicit key wins over the stored one.
    explicit = good_secret()
    chosen = from_env(environ | {"MENDWELL_SECRET_KEY": explicit}).secret_key
    assert chosen.get_secret_value() == explicit


# --- documentation --------------------------------------------------------------------


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = ROOT / "README.md"
    assert readme.exists(), "README.md is missing: it documents every MENDWELL_ setting"
    text = readme.read_text()
    missing = [f"MENDWELL_{f.upper()}" for f in Settings.model_fields
               if not re.search(rf"\bMENDWELL_{f.upper()}\b", text)]
    assert not missing, f"document these settings in README.md: {', '.join(missing)}"


def test_readme_names_no_setting_that_does_not_exist() -> None:
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\bMENDWELL_([A-Z][A-Z0-9_]*[A-Z0-9])\b", text))
    settings = {f.upper() for f in Settings.model_fields}
    # Variables read by the test suite, CI and tooling rather than by the server.
    elsewhere: set[str] = set()
    for folder in ("tests", ".ci", "bench", "docker"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".sh", ".yml", ".yaml", ".env"):
                elsewhere |= set(re.findall(r"MENDWELL_([A-Z][A-Z0-9_]*[A-Z0-9])",
                                            path.read_text(errors="replace")))
    elsewhere |= set(re.findall(r"MENDWELL_([A-Z][A-Z0-9_]*[A-Z0-9])",
                                (ROOT / "Makefile").read_text()))
    unknown = sorted(named - settings - elsewhere)
    assert not unknown, f"README.md names variables nothing reads: {unknown}"


def test_secrets_never_show_in_a_printed_settings_object(
    tmp_path: Path, from_env: Environ
) -> None:
    key, turn = good_secret(), good_secret()
    settings = from_env(base_environ(
        tmp_path, MENDWELL_SECRET_KEY=key, MENDWELL_TURN_SECRET=turn,
        MENDWELL_DATABASE_URL="postgresql+asyncpg://app:db-password@db/mendwell",
        MENDWELL_SMTP_URL="smtp://mailer:mail-password@mail:587"))
    shown = f"{settings!r} {settings} {settings.model_dump()}"
    for secret in (key, turn, "db-password", "mail-password"):
        assert secret not in shown
    assert settings.database_kind == "postgresql+asyncpg"
