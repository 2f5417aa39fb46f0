"""Per-address sign-in throttling against a real ``mendwell serve``: X-Forwarded-For is
believed only from MENDWELL_TRUSTED_PROXIES (none by default), so a client cannot escape
the throttle by sending a new address with every attempt, loopback included."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.cli import main
from tests.browser_support import AppServer

LIMIT = 3  # failed sign-ins per address within the window


def attempt(server: AppServer, n: int, forwarded_for: str) -> int:
    """One failed sign-in (an account that does not exist, a new one each time, so only
    the address throttle can apply), sent from 127.0.0.1 with ``X-Forwarded-For``."""
    body = json.dumps({"email": f"nobody-{n}@x.test", "password": "wrong"}).encode()
    request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
        f"{server.base_url}/api/v1/session", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def serve(directory: Path, **settings: str) -> Iterator[AppServer]:
    server = AppServer(directory, settings={"login_address_limit": str(LIMIT),
                                            "login_account_limit": "100", **settings})
    subprocess.run(server.command("db", "upgrade"), env=server.env(), check=True,
                   capture_output=True, timeout=60)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[AppServer]:
    yield from serve(tmp_path)


@pytest.fixture
def proxied_server(tmp_path: Path) -> Iterator[AppServer]:
    yield from serve(tmp_path, trusted_proxies="127.0.0.1")


def test_a_rotating_forwarded_address_from_loopback_is_still_throttled(
    default_server: AppServer,
) -> None:
    statuses = [attempt(default_server, n, f"203.0.113.{n}") for n in range(LIMIT + 1)]
    # Every attempt counted against 127.0.0.1, whatever it claimed to be.
    assert statuses == [401] * LIMIT + [429]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    proxied_server: AppServer,
) -> None:
    rotating = [attempt(proxied_server, n, f"203.0.113.{n}") for n in range(LIMIT + 1)]
    assert rotating == [401] * (LIMIT + 1)  # four clients, one failure each
    # The address the proxy appended (the rightmost it did not add itself) is the one
    # counted, not what the client put before it.
    same = [attempt(proxied_server, 100 + n, f"10.9.8.{n}, 198.51.100.7")
            for n in range(LIMIT + 1)]
    assert same == [401] * LIMIT + [429]


def test_serve_refuses_uvicorns_forwarded_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # A deployment that still sets it would otherwise lose its proxy silently, and see
    # every client as the proxy (one address, throttled for everyone).
    monkeypatch.setenv("MENDWELL_ENV", "test")
    monkeypatch.setenv("MENDWELL_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "172.28.10.10")
    assert main(["serve", "--port", "9"]) == 2
    assert "MENDWELL_TRUSTED_PROXIES" in capsys.readouterr().err
