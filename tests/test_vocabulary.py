"""The browser's vocabularies come from the server's one definition of each
(``/static/vocabulary.js``, web/pages/vocabulary.py), and no module keeps a copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.testclient import TestClient

from server import notes
from server.triage import LEVELS
from web.pages import note_panel

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def exports(text: str) -> dict[str, object]:
    found = dict(re.findall(r"^export const (\w+) = (.*);$", text, re.MULTILINE))
    return {name: json.loads(value) for name, value in found.items()}


def test_the_module_carries_the_servers_vocabularies(client: TestClient) -> None:
    response = client.get("/static/vocabulary.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "no-cache"
    got = exports(response.text)
    assert got["SECTIONS"] == list(notes.SECTIONS)
    assert got["RISK_JUDGEMENTS"] == list(notes.RISK_JUDGEMENTS)
    assert set(got["SECTION_LABELS"]) == set(notes.SECTIONS)  # type: ignore[arg-type]
    assert got["ACTION_WORDS"] == note_panel.ACTION_LABELS
    assert got["RISK_JUDGEMENT_LABELS"] == note_panel.RISK_JUDGEMENT_LABELS


def test_the_module_carries_the_triage_levels_lowest_first(client: TestClient) -> None:
    got = exports(client.get("/static/vocabulary.js").text)
    assert got["LEVELS"] == ["none", "review", "step_up", "urgent", "emergency"]
    assert got["LEVELS"] == [level.value for level in LEVELS]
    for script in STATIC.glob("*.js"):
        assert '"review", "step_up"' not in script.read_text(), \
            f"{script.name} lists the levels: import LEVELS from vocabulary.js"


def test_no_browser_module_defines_a_vocabulary_of_its_own() -> None:
    names = ("SECTIONS", "SECTION_LABELS", "RISK_JUDGEMENTS", "RISK_JUDGEMENT_LABELS",
             "ACTION_WORDS")
    for script in STATIC.glob("*.js"):
        for name in names:
            assert not re.search(rf"\b(const|let|var) {name}\b", script.read_text()), \
                f"{script.name} defines {name}: import it from vocabulary.js"
    # The offline page works without the network: the worker keeps the module too.
    assert '"/static/vocabulary.js"' in (STATIC / "offline-worker.js").read_text()
