"""Settings, read once from the environment (``MENDWELL_`` prefix) by pydantic-settings.

Every setting is documented in the README; ``tests/test_settings.py`` checks that.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PREFIX = "MENDWELL_"

# Values people paste from examples. A production server with one of these would sign
# session cookies and join links with a key that anyone can read on the internet.
PLACEHOLDER_SECRETS = frozenset(
    {"", "change-me", "changeme", "change_me", "secret", "dev", "development", "test",
     "please-change-me", "replace-me", "xxx", "mendwell", "your-secret-key"}
)
MIN_SECRET_LENGTH = 32


class SettingsError(Exception):
    """A setting is missing or unusable; the message says which and what to do."""


def _comma_list(raw: object) -> object:
    # "a, ,b" → ("a", "b"): how lists are written in an environment file.
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _empty_is_false(raw: object) -> object:
    # An empty variable switches a flag off (pydantic alone refuses "").
    return False if isinstance(raw, str) and raw.strip() == "" else raw


# The kinds of value a setting has, each parsed one way from its variable.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Flag = Annotated[bool, BeforeValidator(_empty_is_false)]
HoursList = Annotated[tuple[int, ...], NoDecode, BeforeValidator(_comma_list)]
AbsolutePath = Annotated[Path, AfterValidator(lambda path: path.resolve())]
Environment = Literal["development", "test", "production"]
IceTransportPolicy = Literal["all", "relay"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
ICE_TRANSPORT_POLICIES: tuple[str, ...] = get_args(IceTransportPolicy)


class Settings(BaseSettings):
    """Every setting, from ``MENDWELL_<NAME>`` (pydantic-settings); secrets are
    ``SecretStr``, so a settings object in a log or traceback shows ``**********``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    env: Environment = "development"
    var_dir: AbsolutePath = Field(default_factory=lambda: Path("var").resolve())
    database_url: SecretStr = SecretStr("")
    redis_url: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    base_url: str = "http://127.0.0.1:8000"
    smtp_url: SecretStr = SecretStr("")
    smtp_from: str = "Mendwell <no-reply@mendwell.local>"
    stun_urls: CommaList = ()
    turn_urls: CommaList = ()
    turn_secret: SecretStr = SecretStr("")
    demo_password: SecretStr = SecretStr("")
    # Idle logoff: HIPAA's automatic logoff safeguard. Staff screens show clinical data
    # for many patients, so they time out sooner than a patient's own session.
    staff_idle_minutes: int = 15
    patient_idle_minutes: int = 30
    idle_warning_seconds: int = 120
    session_max_hours: int = 12
    join_link_hours: int = 72
    # How long an emailed password-reset link works (it works once).
    password_reset_minutes: int = 60
    # Reminder emails, this many hours before each visit (empty: none).
    reminder_hours: HoursList = (24, 1)
    reminder_poll_seconds: float = 60.0
    login_account_limit: int = 5
    login_address_limit: int = 30
    login_window_minutes: int = 15
    # Reverse proxies whose X-Forwarded-For/-Proto are believed (addresses or networks).
    # Empty: none, and the client is the connection's peer, so a client cannot choose
    # the address that per-address sign-in throttling and the audit log see.
    trusted_proxies: CommaList = ()
    outbox_retry_base_seconds: float = 5.0
    outbox_retry_max_seconds: float = 3600.0
    outbox_poll_seconds: float = 2.0
    outbox_max_attempts: int = 20
    break_glass_minutes: int = 60
    # The clinic's IANA time zone: staff pages, the prescriber's day and business days.
    # Patients read times in the zone of their own profile.
    clinic_timezone: str = "America/New_York"
    # The program's name as consents and disclosures give it: "who may disclose"
    # (42 CFR 2.31(a)(2)) and the organisation of an exported FHIR Consent.
    program_name: str = Field(default="Mendwell clinic", min_length=1, max_length=200)
    max_body_bytes: int = 256 * 1024
    run_background_tasks: Flag = True
    # Escalations (CLINICAL.md): a coordinator must acknowledge within these; unanswered,
    # the coordinators are re-alerted and, from the second re-alert on, whoever is on
    # call (never admins). step_up is one business day.
    ack_emergency_minutes: int = 5
    ack_urgent_minutes: int = 60
    ack_step_up_business_days: int = 1
    # Re-alerts repeat on their own interval until someone acknowledges, without moving
    # the deadline (CLINICAL.md, safety invariant 4). step_up re-alerts once a business
    # day from its deadline on.
    realert_emergency_minutes: int = 5
    realert_urgent_minutes: int = 15
    timer_poll_seconds: float = 1.0
    # Follow-up cadence matched to risk (CLINICAL.md), in days.
    follow_up_urgent_days: int = 7
    follow_up_medication_change_days: int = 28
    follow_up_moderate_days: int = 28
    follow_up_stable_days: int = 90
    follow_up_default_days: int = 28
    # Emergency information: numbers without a country code are read in this region
    # (ISO 3166 code), then stored in E.164.
    phone_region: str = "US"
    # A location confirmed longer ago than this is shown as "not confirmed today", and a
    # patient entering a visit confirms it again first (CLINICAL.md, invariants 2, 10).
    location_confirm_hours: int = 12
    # The last day of the DEA's telemedicine flexibilities for Schedule II-V (fourth
    # extension, 90 FR 61301). From the day after, prescribing a controlled substance by
    # telemedicine needs an in-person evaluation again (Ryan Haight Act), except
    # buprenorphine for OUD (90 FR 6504). A date, so a new extension is a setting.
    telemedicine_flexibilities_end: date = date(2026, 12, 31)
    # Video visits (signaling/). TURN credentials are short-lived so a leaked one is
    # soon useless; clients refresh them with `ice-refresh` before they expire.
    turn_ttl_seconds: int = 600
    # "all": peers may connect directly. "relay": media only through TURN, so neither side
    # ever learns the other's IP address (a patient's home address stays private).
    ice_transport_policy: IceTransportPolicy = "all"
    # A patient still waiting this long past the visit's start alerts the coordinators.
    waiting_alert_minutes: int = 10
    waiting_alert_poll_seconds: float = 15.0
    # aiortc echo peers cost about a quarter of a core each: cap them per instance.
    device_check_limit: int = 4
    # The page ends its check by itself after device_check_seconds (the "about 10
    # seconds" it promises); the server ends the echo at device_check_max_seconds after
    # `start` whatever the page does, so a tab that never stops frees its slot soon.
    device_check_seconds: float = 10.0
    device_check_max_seconds: float = 15.0
    # Heartbeats: a ping every interval; a socket that has not answered within the
    # timeout is dropped (5 + 10: a dead peer is noticed within 15 seconds).
    ws_ping_interval_seconds: float = 5.0
    # Visit signaling has a listener of its own (signaling/listener.py). 0: the HTTP
    # port + 1. Behind a proxy that routes /ws/visits/ to it, set signaling_url to the
    # site's ws(s) origin (wss://clinic.example) and pages open signaling there.
    signaling_port: int = 0
    signaling_url: str = ""
    ws_ping_timeout_seconds: float = 10.0
    # Prefix of the Redis keys and channels of rooms and presence (several deployments,
    # or test runs, may share one Redis).
    redis_namespace: str = "mendwell"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def database_kind(self) -> str:
        """The database's dialect and driver ("sqlite+aiosqlite"): safe to print."""
        return self.database_url.get_secret_value().split("://")[0]

    @property
    def secure_cookies(self) -> bool:
        return not self.is_development and self.env != "test"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The settings of ``MENDWELL_*`` in the environment, ``overrides`` winning, checked
        and completed; a bad value raises SettingsError naming its variable."""
        try:
            settings = cls(**overrides)
        except ValidationError as error:
            raise _explained(error) from None
        return settings.completed()

    def completed(self) -> Settings:
        """Fill in derived defaults and check the result; raises SettingsError."""
        updates: dict[str, Any] = {}
        if not self.database_url:
            updates["database_url"] = SecretStr(
                f"sqlite+aiosqlite:///{self.var_dir / 'mendwell.db'}")
        key = self.secret_key.get_secret_value()
        if self.is_production:
            if key.strip().lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    "MENDWELL_SECRET_KEY is missing or a placeholder. In production it must be "
                    f"a random value of at least {MIN_SECRET_LENGTH} characters, for example "
                    "the output of: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
        elif not key:
            updates["secret_key"] = SecretStr(_development_secret(self.var_dir))
        if not is_zone_name(self.clinic_timezone):
            raise SettingsError("MENDWELL_CLINIC_TIMEZONE must be an IANA time zone name such "
                                f"as America/Chicago, not {self.clinic_timezone!r}.")
        if self.phone_region not in phone_regions():
            raise SettingsError("MENDWELL_PHONE_REGION must be a two-letter region code that "
                                f"phone numbers know, such as US or GB, not {self.phone_region!r}.")
        for proxy in self.trusted_proxies:
            if not is_address_or_network(proxy):
                raise SettingsError(
                    "MENDWELL_TRUSTED_PROXIES must list IP addresses or networks, such as "
                    f"10.0.0.5 or 172.28.10.0/24, not {proxy!r}.")
        if self.signaling_url and urlsplit(self.signaling_url).scheme not in ("ws", "wss"):
            raise SettingsError("MENDWELL_SIGNALING_URL must start with ws:// or wss://, "
                                f"for example wss://clinic.example, not {self.signaling_url!r}.")
        if not 0 <= self.signaling_port <= 65535:
            raise SettingsError("MENDWELL_SIGNALING_PORT must be a port number (0: the HTTP "
                                f"port + 1), not {self.signaling_port}.")
        if self.turn_urls and not self.turn_secret:
            raise SettingsError("MENDWELL_TURN_URLS is set but MENDWELL_TURN_SECRET is not.")
        if not 0 < self.device_check_seconds < self.device_check_max_seconds:
            raise SettingsError(
                "MENDWELL_DEVICE_CHECK_SECONDS must be above 0 and below "
                "MENDWELL_DEVICE_CHECK_MAX_SECONDS (the server's own deadline), not "
                f"{self.device_check_seconds} and {self.device_check_max_seconds}.")
        if self.turn_ttl_seconds < 60:
            raise SettingsError("MENDWELL_TURN_TTL_SECONDS must be at least 60.")
        if self.ice_transport_policy == "relay" and not self.turn_urls:
            raise SettingsError("MENDWELL_ICE_TRANSPORT_POLICY is relay but MENDWELL_TURN_URLS "
                                "is not set: with no TURN server no video could connect.")
        return self.model_copy(update=updates) if updates else self


def phone_regions() -> frozenset[str]:
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


def is_address_or_network(value: str) -> bool:
    """An IP address, or a network in CIDR notation with no host bits set (uvicorn would
    take anything else as a name to compare literally, and never match it)."""
    try:
        if "/" in value:
            ipaddress.ip_network(value)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_zone_name(name: str) -> bool:
    """An IANA zone name such as ``America/Chicago`` (ZoneInfo refuses paths itself)."""
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _development_secret(var_dir: Path) -> str:
    # Kept on disk so that a development restart does not sign everybody out.
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _explained(error: ValidationError) -> SettingsError:
    """pydantic's first complaint, said as before: the variable, what it must be, and
    the value given (never a secret: secrets are plain strings and cannot fail)."""
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    variable, given = PREFIX + name.upper(), first.get("input")
    kind = first["type"]
    if kind in ("int_parsing", "int_from_float", "float_parsing", "int_type", "float_type"):
        return SettingsError(f"{variable} must be a number, not {given!r}.")
    if kind == "bool_parsing":
        return SettingsError(f"{variable} must be true or false, not {given!r}.")
    if kind == "literal_error":
        allowed = get_args(Settings.model_fields[name].annotation)
        return SettingsError(f"{variable} must be one of {', '.join(allowed)}, not {given!r}.")
    if kind == "extra_forbidden":
        return SettingsError(f"{name} is not a setting.")
    return SettingsError(f"{variable}: {first['msg']}, not {given!r}.")
