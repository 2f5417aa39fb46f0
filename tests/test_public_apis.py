"""No module of the project reaches into the internals of its dependencies.

uvicorn, Starlette, websockets and picows (and every other dependency) are used through their
public, documented APIs only, so that upgrading them within their pinned ranges
(pyproject.toml) cannot break Mendwell silently: no private attribute (``x._name``) of
anything but the object's own class, no private or internal module, no private name
imported from outside the project, no ``getattr``/``setattr`` by a private name. Our
own objects' privates, read by a test of that object or by a sibling class of the same
module, are listed below with the reason; nothing else is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "signaling", "web", "escalation", "tests", "bench")

# Modules that are not their package's public API, though their names are not private.
INTERNAL_MODULES = ("uvicorn.protocols", "uvicorn.lifespan", "uvicorn.loops",
                    "uvicorn.supervisors", "websockets.legacy", "websockets.speedups",
                    "starlette.middleware.exceptions", "picows.picows", "picows.api")

# (file, expression): our own objects, never a dependency's.
OWN_PRIVATES = {
    # A peer link asks its own client (same module) to rebuild it after ICE failed.
    ("signaling/client.py", "self.client._rebuild"),
    ("signaling/client.py", "self.client._replace"),
    ("signaling/client.py", "Link._consume_into"),
    # Tests of the hub's watch list and of the session cache look at their own state.
    ("tests/test_signaling_events.py", "hub._watched"),
    ("tests/test_room_page_cost.py", "cache._entries"),
}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def findings(source: str, path: str) -> list[str]:
    """Every reach into a private or internal API in ``source``, as "path:line: what"."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            expression = ast.unparse(node)
            if (path, expression) not in OWN_PRIVATES:
                found.append(f"{where}: private attribute {expression}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""]
            for module in modules:
                parts = module.split(".")
                if any(private(p) for p in parts) or module.startswith(INTERNAL_MODULES):
                    found.append(f"{where}: internal module {module}")
            if isinstance(node, ast.ImportFrom) and \
                    not (node.module or "").startswith(tuple(f"{p}." for p in PACKAGES)):
                found += [f"{where}: private name {a.name} from {node.module}"
                          for a in node.names if private(a.name)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr", "delattr") and \
                len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str) and private(node.args[1].value):
            found.append(f"{where}: {node.func.id} by private name {node.args[1].value}")
    return found


def project_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if "node_modules" not in p.parts)


def test_no_module_reaches_into_a_dependency() -> None:
    files = project_files()
    assert len(files) > 100  # the walk found the project
    found = [f for p in files
             for f in findings(p.read_text(), p.relative_to(ROOT).as_posix())]
    assert found == []


@pytest.mark.parametrize(("source", "what"), [
    ("receive = websocket._receive", "private attribute websocket._receive"),
    ("x = session._send_rx.receive()", "private attribute session._send_rx"),
    ("from uvicorn.protocols.websockets.websockets_sansio_impl import P",
     "internal module uvicorn.protocols"),
    ("from websockets.legacy.server import serve", "internal module websockets.legacy"),
    ("import starlette._utils", "internal module starlette._utils"),
    ("from starlette.routing import _wrap", "private name _wrap"),
    ("getattr(conn, '_reader')", "getattr by private name _reader"),
])
def test_the_check_finds_each_kind_of_reach(source: str, what: str) -> None:
    found = findings(source, "example.py")
    assert len(found) == 1 and what in found[0], found


def test_own_state_and_dunders_are_not_findings() -> None:
    assert findings("self._pending = None\ncls._cache = {}\nx.__class__\n", "example.py") == []
