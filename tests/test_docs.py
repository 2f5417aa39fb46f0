"""The docs stay true: every API operation and every setting is documented."""

from __future__ import annotations

from pathlib import Path

from server.app import api_operations

ROOT = Path(__file__).resolve().parent.parent


def test_every_api_operation_is_in_docs_api() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [f"{op.method} {op.path}" for op in api_operations()
               if f"`{op.method} {op.path}`" not in text and op.path not in text]
    assert missing == []


def test_docs_exist_for_the_protocol_rules_performance_and_deployment() -> None:
    for name in ("signaling.md", "clinical.md", "deploy.md", "security.md", "api.md",
                 "architecture.md"):
        assert (ROOT / "docs" / name).stat().st_size > 500, name
