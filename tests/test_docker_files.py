"""The Docker stack in docker/, checked without a Docker engine.

- docker/compose.yaml validates against the Compose Specification JSON schema (vendored in
  tests/data/compose-spec.json) and has the topology docs/deploy.md describes: a one-shot
  migration the apps wait for, two health-checked app instances, health checks, declared
  volumes and networks, env files instead of inline secrets.
- docker/Dockerfile: stages, non-root final user, health check, runtime dependencies only,
  no migration at start.
- docker/turnserver.conf: REST credentials with the secret from the environment, no relay into
  private ranges except the app containers' addresses (the device check's echo peer).
- docker/Caddyfile: proxies everything (the /ws/ WebSockets included) to both instances with
  /healthz checks, and never logs a URL query string (join links carry their token there).
- docker/env.example: every MENDWELL_ setting of server/settings.py, placeholders only.
- The small shell programs in compose.yaml and docker/postgres/app-role.sh, run with stand-ins
  for the programs they start.

tests/data/compose-spec.json is the Compose Specification's JSON schema (Apache-2.0, licence in
tests/data/compose-spec.LICENSE), copied from the check-jsonschema 0.39.0 wheel on PyPI
(check_jsonschema/builtin_schemas/vendor/compose-spec.json). To refresh it:
pip download --no-deps check-jsonschema, unzip, copy that file.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from server.settings import PLACEHOLDER_SECRETS, PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

APP_SERVICES = ("app1", "app2")
IMAGE_SERVICES = ("migrate", *APP_SERVICES)
EXPECTED_SERVICES = {"migrate", "app1", "app2", "caddy", "postgres", "redis", "coturn", "mailpit"}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|_URL$", re.IGNORECASE)
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
JOIN_LINK = "/visits/12?t=eyJ2IjoxMn0.secret-token"
# The container listens on every interface of its own network namespace, for the proxy.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


# --------------------------------------------------------------------------------- helpers


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"]
    return result


def env_lines(path: Path) -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) for every `NAME=value` line, `# NAME=value` ones inactive."""
    found: dict[str, tuple[str, bool]] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        active = not stripped.startswith("#")
        body = stripped.lstrip("#").strip()
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", body)
        if match:
            found[match.group(1)] = (match.group(2), active)
    return found


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def as_list_raw(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str | dict) else list(value)


def env_files(service: dict[str, Any]) -> list[str]:
    return [item if isinstance(item, str) else item["path"]
            for item in as_list_raw(service.get("env_file"))]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def unescape(text: str) -> str:
    """What a container's shell sees: compose turns `$$` into `$`."""
    return text.replace("$$", "$")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == keyword]


def dockerfile_stages() -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append((pending + line).strip())
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for text in logical:
        instr, _, args = text.partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif instr == "FROM":
            words = [word for word in args.split() if not word.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: global_args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{instr} before the first FROM"
            stages[-1].instructions.append((instr, args))
    return stages


@dataclass
class Node:
    tokens: list[str]
    children: list[Node] = field(default_factory=list)

    def walk(self) -> list[Node]:
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found

    def child(self, *head: str) -> Node | None:
        for node in self.children:
            if tuple(node.tokens[: len(head)]) == head:
                return node
        return None


def caddyfile() -> Node:
    """The Caddyfile as a tree of lines and blocks (enough for this file's syntax)."""
    root = Node([])
    stack = [root]
    for raw in (DOCKER / "Caddyfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if tokens == ["}"]:
            stack.pop()
            assert stack, "unbalanced } in the Caddyfile"
            continue
        opens = tokens[-1] == "{"
        node = Node(tokens[:-1] if opens else tokens)
        stack[-1].children.append(node)
        if opens:
            stack.append(node)
    assert len(stack) == 1, "unclosed { in the Caddyfile"
    return root


def turnserver_conf() -> list[tuple[str, str]]:
    options = []
    for raw in (DOCKER / "turnserver.conf").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options.append((name.strip(), value.strip()))
    return options


def ip_to_int(address: str) -> int:
    parts = [int(part) for part in address.split(".")]
    assert len(parts) == 4
    return (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]


def subnet_range(cidr: str) -> tuple[int, int]:
    address, _, bits = cidr.partition("/")
    start = ip_to_int(address)
    size = 1 << (32 - int(bits))
    return start, start + size - 1


def network_subnet(name: str) -> str:
    subnet: str = compose()["networks"][name]["ipam"]["config"][0]["subnet"]
    return subnet


# ------------------------------------------------------------------------------ compose.yaml


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in validator.iter_errors(compose())]
    assert errors == []


def test_the_schema_really_rejects_a_broken_compose_file() -> None:
    # Guards against a vendored schema that accepts anything.
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = copy.deepcopy(compose())
    broken["services"]["app1"]["helthcheck"] = broken["services"]["app1"].pop("healthcheck")
    broken["services"]["postgres"]["depends_on"] = {"redis": {"condition": "when_ready"}}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
    assert len(errors) >= 2


def test_compose_has_the_services_of_the_stack() -> None:
    assert set(services()) == EXPECTED_SERVICES
    for name, service in services().items():
        assert service.get("image") or service.get("build"), f"{name} has no image or build"


def test_migrate_and_the_apps_run_one_image_built_from_the_dockerfile() -> None:
    images = {services()[name]["image"] for name in IMAGE_SERVICES}
    assert len(images) == 1
    for name in IMAGE_SERVICES:
        build = services()[name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert (context / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert context == ROOT
    # A default name that can never be pulled from Docker Hub by accident.
    image = next(iter(images))
    default = re.fullmatch(r"\$\{APP_IMAGE:-([^}]+)\}", image)
    assert (default.group(1) if default else image).startswith("localhost/")


def test_migrations_run_once_in_a_one_shot_service_the_apps_wait_for() -> None:
    migrate = services()["migrate"]
    argv = " ".join(as_list(migrate.get("entrypoint")) + as_list(migrate.get("command")))
    assert "mendwell db upgrade" in argv
    assert migrate.get("restart") in ("no", None)
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        app = services()[name]
        depends = app["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        # The image's own command: serve, never migrate.
        assert "command" not in app
        assert "entrypoint" not in app


@pytest.mark.parametrize("name", ["app1", "app2", "postgres", "redis", "caddy"])
def test_long_running_services_have_health_checks(name: str) -> None:
    check = services()[name]["healthcheck"]
    assert not check.get("disable")
    assert as_list(check["test"])[0] in ("CMD", "CMD-SHELL")


def test_app_health_checks_poll_healthz() -> None:
    for name in APP_SERVICES:
        assert "/healthz" in " ".join(as_list(services()[name]["healthcheck"]["test"]))


def test_app_instances_get_their_settings_from_the_env_file_only() -> None:
    for name in APP_SERVICES:
        app = services()[name]
        assert env_files(app) == [".env"]
        # No MENDWELL_ setting written into compose.yaml: they all come from docker/.env,
        # but for the proxy's address, which compose.yaml's own networks fix.
        assert [key for key in environment(app) if key.startswith(PREFIX)] == \
            [PREFIX + "TRUSTED_PROXIES"]
    # The owner's password is for the database and the migration only.
    holders = {name for name, service in services().items()
               if "db-owner.env" in env_files(service)}
    assert holders == {"postgres", "migrate"}


def test_env_files_have_committed_examples_and_are_git_ignored() -> None:
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert "docker/.env" in ignored
    local_ignored = {line.strip() for line in (DOCKER / ".gitignore").read_text().splitlines()}
    for service in services().values():
        for name in env_files(service):
            example = DOCKER / ("env.example" if name == ".env" else f"{name}.example")
            assert example.is_file(), f"{name} has no committed example {example.name}"
            assert f"/{name}" in local_ignored


def test_no_secret_is_written_inline_in_compose() -> None:
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRETISH.search(key):
                assert INTERPOLATION.fullmatch(value), \
                    f"{name}: {key} must come from docker/.env (${{...}}), not be written inline"
    text = (DOCKER / "compose.yaml").read_text()
    assert not re.search(r"[0-9a-f]{32,}", text), "something like a key is written in compose"
    assert not re.search(r"://[^:/\s$]+:[^@\s$]+@", text), "a URL with a literal password"


def test_required_interpolations_are_in_env_example() -> None:
    example = env_lines(DOCKER / "env.example")
    text = (DOCKER / "compose.yaml").read_text()
    for match in INTERPOLATION.finditer(text):
        name, operator = match.group(1), match.group(2)
        if operator in (":?", "?"):
            assert name in example and example[name][1], f"{name} must be set in env.example"
        elif operator is None:
            assert name in example, f"{name} is used by compose.yaml but not in env.example"


def test_volumes_and_networks_are_declared_and_bind_mounts_exist() -> None:
    data = compose()
    declared_volumes = set(data.get("volumes") or {})
    declared_networks = set(data.get("networks") or {})
    used_volumes: set[str] = set()
    for name, service in data["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith(("./", "../", "/")):
                if name == "coturn" and "turn-tls" in source:
                    continue
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            elif source.startswith("${"):
                continue
            else:
                used_volumes.add(source)
        networks = service.get("networks") or []
        names = set(networks) if isinstance(networks, dict | list) else set()
        assert names <= declared_networks, f"{name} uses undeclared networks"
        if "network_mode" not in service:
            assert names, f"{name} is on no declared network"
    assert used_volumes == declared_volumes
    assert "pgdata" in used_volumes


def test_only_the_proxy_and_coturn_are_reachable_from_outside() -> None:
    data = services()
    published = {name for name, service in data.items() if service.get("ports")}
    assert published == {"caddy", "mailpit"}
    assert {str(port).split(":")[0] for port in data["caddy"]["ports"]} == {"80", "443"}
    # Mailpit's UI shows every email, join links included: loopback only.
    assert all(str(port).startswith("127.0.0.1:") for port in data["mailpit"]["ports"])
    assert data["mailpit"].get("profiles") == ["dev"]
    assert data["coturn"]["network_mode"] == "host"
    assert compose()["networks"]["data"].get("internal") is True
    for name in ("postgres", "redis"):
        assert data[name]["networks"] == ["data"]


def test_apps_trust_forwarded_headers_from_the_proxy_only() -> None:
    caddy_ip = services()["caddy"]["networks"]["edge"]["ipv4_address"]
    start, end = subnet_range(network_subnet("edge"))
    assert start <= ip_to_int(caddy_ip) <= end
    for name in APP_SERVICES:
        app = environment(services()[name])
        assert app[PREFIX + "TRUSTED_PROXIES"] == caddy_ip
        # uvicorn's own variable: `mendwell serve` refuses to start while it is set.
        assert "FORWARDED_ALLOW_IPS" not in app


def test_app_containers_are_locked_down() -> None:
    for name in IMAGE_SERVICES:
        service = services()[name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_coturn_gets_the_apps_turn_secret_from_the_env_file() -> None:
    coturn = services()["coturn"]
    env = environment(coturn)
    secret_vars = [key for key, value in env.items()
                   if re.fullmatch(r"\$\{MENDWELL_TURN_SECRET(:\?[^}]*)?\}", value)]
    assert secret_vars, "coturn must get MENDWELL_TURN_SECRET from docker/.env"
    script = unescape(" ".join(as_list(coturn["command"])))
    assert f"static-auth-secret=%s\\n' \"${secret_vars[0]}\"" in script
    assert "exec turnserver -c" in script
    mounts = [volume.split(":") for volume in coturn["volumes"]]
    assert ["./turnserver.conf", "/etc/coturn/turnserver.conf", "ro"] in mounts


# ---------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_on_the_slim_python_base() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert stages[-1].base.startswith("python:3.11-slim")
    assert stages[0].base == stages[-1].base, "build and run on the same Python"
    final = stages[-1]
    copies_from = [args for args in final.all("COPY") if args.startswith("--from=")]
    assert copies_from, "the final stage copies the built virtualenv"
    for args in final.all("RUN"):
        assert "build-essential" not in args and "gcc" not in args


def test_final_stage_runs_as_a_non_root_user() -> None:
    users = dockerfile_stages()[-1].all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_final_stage_has_a_healthz_healthcheck() -> None:
    checks = dockerfile_stages()[-1].all("HEALTHCHECK")
    assert len(checks) == 1
    argv = json.loads(checks[0][checks[0].index("CMD") + 3:].strip())
    assert argv[0] == "python"
    assert "http://127.0.0.1:8000/healthz" in argv[-1]


def test_only_runtime_dependencies_are_installed() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert ".[dev]" not in text and "[dev]" not in text
    for stage in dockerfile_stages():
        for args in stage.all("RUN"):
            assert not re.search(r"pip install[^&|;]*\s-e\s", args), "no editable installs"
            assert "optional-dependencies" not in args


def test_entrypoint_serves_and_never_migrates() -> None:
    final = dockerfile_stages()[-1]
    entrypoint = json.loads(final.all("ENTRYPOINT")[-1])
    command = json.loads(final.all("CMD")[-1])
    assert entrypoint == ["mendwell"]
    assert command == ["serve", "--host", ALL_INTERFACES, "--port", "8000"]
    assert "upgrade" not in entrypoint + command
    assert "8000" in final.all("EXPOSE")


def test_dockerignore_lets_in_what_the_dockerfile_copies_and_nothing_secret() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore is an allowlist"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for stage in dockerfile_stages():
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _ = args.split()
            for source in sources:
                assert source in allowed, f"COPY {source} is excluded by .dockerignore"
                assert (ROOT / source).exists()
    assert not {"docker", ".env", "var", ".venv", ".git"} & allowed


# ----------------------------------------------------------------------------- turnserver.conf


def test_turnserver_uses_rest_credentials_with_no_secret_in_the_file() -> None:
    options = turnserver_conf()
    names = [name for name, _ in options]
    assert "use-auth-secret" in names
    assert "static-auth-secret" not in names, "the secret is appended at start from the env"
    assert "lt-cred-mech" not in names and "no-auth" not in names
    assert "realm" in names


def test_turnserver_relays_udp_only_and_never_into_private_ranges() -> None:
    options = turnserver_conf()
    names = {name for name, _ in options}
    assert {"no-tcp-relay", "no-multicast-peers", "no-cli"} <= names

    def ranges(option: str) -> list[tuple[int, int]]:
        pairs = [value.split("-") for name, value in options if name == option]
        return [(ip_to_int(low), ip_to_int(high if high else low)) for low, high in
                (pair if len(pair) == 2 else [pair[0], ""] for pair in pairs)
                if ":" not in low]

    denied, allowed = ranges("denied-peer-ip"), ranges("allowed-peer-ip")

    def relayable(address: str) -> bool:
        # coturn: an address both allowed and denied is allowed.
        value = ip_to_int(address)
        if any(low <= value <= high for low, high in allowed):
            return True
        return not any(low <= value <= high for low, high in denied)

    for address in ("10.1.2.3", "172.17.0.2", "192.168.1.1", "127.0.0.1", "169.254.169.254",
                    "100.64.0.1", "0.0.0.1", "198.18.0.1", "240.0.0.1"):
        assert not relayable(address), address
    assert relayable("8.8.8.8")
    assert relayable("203.0.114.9")

    # The single exception: the apps' dynamic addresses on `edge`, where the device-check echo
    # peer is; not the gateway (the host itself), not Caddy, not the data network.
    edge = compose()["networks"]["edge"]["ipam"]["config"][0]
    dynamic_low, dynamic_high = subnet_range(edge["ip_range"])
    assert allowed == [(dynamic_low, dynamic_high - 1)], "allowed-peer-ip = edge's ip_range"
    subnet_low, _ = subnet_range(edge["subnet"])
    caddy_ip = services()["caddy"]["networks"]["edge"]["ipv4_address"]
    assert not relayable(compose_ip(subnet_low + 1)), "the gateway is the host"
    assert not relayable(caddy_ip)
    assert not dynamic_low <= ip_to_int(caddy_ip) <= dynamic_high
    data_low, data_high = subnet_range(network_subnet("data"))
    assert not relayable(compose_ip(data_low + 1)) and not relayable(compose_ip(data_high - 1))


def compose_ip(value: int) -> str:
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


def test_turnserver_ports() -> None:
    options = dict(turnserver_conf())
    assert options["listening-port"] == "3478"
    assert options["tls-listening-port"] == "5349"
    assert 1024 < int(options["min-port"]) < int(options["max-port"]) <= 65535


# ----------------------------------------------------------------------------------- Caddyfile


def test_caddy_proxies_everything_websockets_included_to_both_instances() -> None:
    root = caddyfile()
    sites = [node for node in root.children
             if node.tokens and not node.tokens[0].startswith("(")]
    assert [site.tokens for site in sites] == [["{$SITE_DOMAIN:localhost}"]]
    proxies = [node for node in sites[0].walk() if node.tokens[:1] == ["reverse_proxy"]]
    covering_ws = []
    for proxy in proxies:
        rest = proxy.tokens[1:]
        matcher = rest[0] if rest and rest[0].startswith(("/", "@", "*")) else None
        upstreams = set(rest[1:] if matcher else rest)
        if matcher in (None, "*", "/ws/*") and {"app1:8000", "app2:8000"} <= upstreams:
            covering_ws.append(proxy)
    assert covering_ws, "no reverse_proxy sends /ws/ to app1 and app2"
    for proxy in covering_ws:
        assert proxy.child("health_uri", "/healthz"), "active health checks on /healthz"
        assert proxy.child("lb_try_duration"), "retry on the other instance during restarts"
    # Nothing in front of the proxy answers /ws/ itself.
    assert not [node for node in sites[0].walk()
                if node.tokens[:1] in (["respond"], ["redir"]) and "/ws/" in " ".join(node.tokens)]


def test_caddy_sends_visit_signaling_to_its_own_listener_on_both_instances() -> None:
    """``/ws/visits/`` is served by each instance's signaling listener (HTTP port + 1),
    checked for health on the app's port, and the pages are told to open it on the
    site's own origin."""
    root = caddyfile()
    site = next(node for node in root.children
                if node.tokens and not node.tokens[0].startswith("("))
    signaling = [node for node in site.walk()
                 if node.tokens[:2] == ["reverse_proxy", "/ws/visits/*"]]
    assert len(signaling) == 1
    proxy = signaling[0]
    assert set(proxy.tokens[2:]) == {"app1:8001", "app2:8001"}
    assert proxy.child("health_uri", "/healthz") and proxy.child("health_port", "8000")
    assert proxy.child("lb_try_duration"), "retry on the other instance during restarts"
    # Caddy orders same-named directives by their matchers' specificity, so the path
    # matcher wins over the catch-all proxy whatever order they are written in.
    env = (DOCKER / "env.example").read_text()
    assert "\nMENDWELL_SIGNALING_URL=wss://localhost\n" in env


def test_caddy_never_logs_query_strings() -> None:
    root = caddyfile()
    logs = [node for node in root.walk() if node.tokens[:1] == ["log"]]
    assert len(logs) >= 2, "both the access log and Caddy's default log are configured"
    for log in logs:
        fmt = log.child("format", "filter")
        assert fmt is not None, f"{log.tokens}: no filter"
        fields = fmt.child("fields") or fmt
        uri = fields.child("request>uri")
        assert uri is not None, f"{log.tokens}: request>uri is not filtered"
        assert uri.tokens[1] == "regexp"
        # RE2 and Python agree on this simple pattern.
        redacted = re.sub(uri.tokens[2], uri.tokens[3] if len(uri.tokens) > 3 else "", JOIN_LINK)
        assert "secret-token" not in redacted and "?t=" not in redacted
        assert fields.child("request>headers>Referer", "delete")
    assert not [node for node in root.walk() if node.tokens[:1] == ["log_credentials"]]


# ---------------------------------------------------------------------------------- env.example


def test_env_example_lists_every_setting() -> None:
    example = env_lines(DOCKER / "env.example")
    settings = {PREFIX + name.upper() for name in Settings.model_fields}
    missing = sorted(settings - set(example))
    assert missing == [], f"add these settings to docker/env.example: {missing}"
    unknown = sorted(name for name in example if name.startswith(PREFIX) and name not in settings)
    assert unknown == [], f"not settings of server/settings.py: {unknown}"


def test_env_examples_hold_placeholders_only() -> None:
    example = env_lines(DOCKER / "env.example")
    # The app refuses to start in production with this key: a forgotten edit cannot go live.
    assert example["MENDWELL_SECRET_KEY"] == ("change-me", True)
    assert "change-me" in PLACEHOLDER_SECRETS
    assert example["MENDWELL_ENV"] == ("production", True)
    assert example["MENDWELL_TURN_SECRET"] == ("", True)
    for url in ("MENDWELL_DATABASE_URL", "MENDWELL_REDIS_URL"):
        assert "GENERATE-ME" in example[url][0]
    owner = env_lines(DOCKER / "db-owner.env.example")
    assert owner["POSTGRES_PASSWORD"] == ("GENERATE-ME", True)
    for path in (DOCKER / "env.example", DOCKER / "db-owner.env.example"):
        assert not re.search(r"[0-9a-f]{24,}", path.read_text()), f"{path.name}: a real key?"


# ---------------------------------------------------------------- the stack's shell programs


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def run_shell(argv: list[str], env: dict[str, str],
              bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([unescape(arg) for arg in argv], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env}, timeout=30, check=False)


GOOD_PASSWORD = "0123456789abcdef" * 4


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_app_role_script_checks_passwords_before_initdb(tmp_path: Path) -> None:
    script = str(DOCKER / "postgres" / "app-role.sh")
    owner = {"POSTGRES_USER": "mendwell", "POSTGRES_DB": "mendwell",
             "POSTGRES_PASSWORD": GOOD_PASSWORD, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def check(url: str, **overrides: str) -> int:
        env = {**owner, "APP_DATABASE_URL": url, **overrides}
        return subprocess.run(["bash", script, "--check"], env=env, capture_output=True,
                              timeout=30, check=False).returncode

    good = f"postgresql+asyncpg://mendwell_app:{GOOD_PASSWORD}@postgres:5432/mendwell"
    assert check(good) == 0
    assert check("postgresql+asyncpg://mendwell_app:GENERATE-ME@postgres:5432/mendwell") != 0
    assert check(f"postgresql+asyncpg://mendwell:{GOOD_PASSWORD}@postgres:5432/mendwell") != 0
    assert check(good, POSTGRES_PASSWORD="GENERATE-ME") != 0
    # Without --check it would create the role; psql is replaced to see what it is given.
    stub(tmp_path, "psql", 'echo "psql $*"; cat\n')
    result = subprocess.run(["bash", script], capture_output=True, text=True, timeout=30,
                            env={**owner, "APP_DATABASE_URL": good,
                                 "PATH": f"{tmp_path}:{owner['PATH']}"}, check=False)
    assert result.returncode == 0, result.stderr
    assert "app_user=mendwell_app" in result.stdout
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES" in result.stdout
    assert GOOD_PASSWORD not in result.stdout.split("CREATE ROLE")[1], "password goes by psql -v"


def test_coturn_start_writes_the_secret_to_a_private_config_copy(tmp_path: Path) -> None:
    coturn = services()["coturn"]
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(DOCKER / "turnserver.conf", etc / "turnserver.conf")
    stub(tmp_path, "turnserver",
         'echo "argv: $*"; echo "env secret: ${TURN_SECRET:-none}"; tail -n 2 "$2"\n'
         'stat -c "mode %a" "$2"\n')
    script = coturn["command"][0].replace("/var/lib/coturn", str(tmp_path)) \
        .replace("/etc/coturn/turnserver.conf", str(etc / "turnserver.conf"))
    result = run_shell([*coturn["entrypoint"], script],
                       {"TURN_SECRET": GOOD_PASSWORD, "TURN_EXTERNAL_IP": "203.0.113.7"},
                       tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"static-auth-secret={GOOD_PASSWORD}" in out
    assert "external-ip=203.0.113.7" in out
    assert GOOD_PASSWORD not in out.split("\n")[0], "the secret is not on the command line"
    assert "env secret: none" in out
    assert "mode 600" in out


def test_redis_takes_its_password_from_the_app_url_and_refuses_a_placeholder(
        tmp_path: Path) -> None:
    redis = services()["redis"]
    stub(tmp_path, "docker-entrypoint.sh", 'echo "$*"\n')
    ok = run_shell(as_list(redis["command"]),
                   {"APP_REDIS_URL": f"redis://:{GOOD_PASSWORD}@redis:6379/0"}, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split()[:3] == ["redis-server", "--requirepass", GOOD_PASSWORD]
    bad = run_shell(as_list(redis["command"]),
                    {"APP_REDIS_URL": "redis://:GENERATE-ME@redis:6379/0"}, tmp_path)
    assert bad.returncode != 0
    assert "openssl rand" in bad.stderr


def test_migrate_runs_as_the_owner_from_db_owner_env(tmp_path: Path) -> None:
    migrate = services()["migrate"]
    stub(tmp_path, "mendwell", 'echo "$* $MENDWELL_DATABASE_URL"\n')
    result = run_shell(
        [*as_list(migrate["entrypoint"]), *as_list(migrate["command"])],
        {"POSTGRES_USER": "mendwell", "POSTGRES_PASSWORD": GOOD_PASSWORD,
         "POSTGRES_DB": "mendwell", "MENDWELL_DATABASE_URL": "postgresql+asyncpg://app@x/y"},
        tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"db upgrade postgresql+asyncpg://mendwell:{GOOD_PASSWORD}@postgres:5432/mendwell")
