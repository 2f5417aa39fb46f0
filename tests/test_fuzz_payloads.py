"""Hypothesis against the payloads that carry clinical data: the check-in draft (PUT),
the check-in completion (POST) and the visit note (PUT).

Bodies are valid ones with parts dropped, replaced by any JSON value, added, or replaced
by a hostile value written as raw JSON text (NaN, Infinity, 1e999, a 5,000-digit
integer, 2**70, lone surrogates, NUL, nesting 1,000 deep, wrong types), and now and then
any JSON at all. For every one:

- never a 5xx;
- a 4xx stores nothing: the rows of every table a save writes are counted before and
  after, and the check-in or note reads back exactly as before;
- a 2xx stays readable: the API and the pages that show it (the patient's check-in page,
  the prescriber's visit room) answer 200.

On SQLite and PostgreSQL (NUL and number ranges differ between them). Bounded for CI: a
fixed number of derandomized examples per payload.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.models import (
    AuditEntry,
    CheckIn,
    CheckInVersion,
    Escalation,
    EscalationEvent,
    MeasureResult,
    Medication,
    MedicationChange,
    Timer,
    VisitNote,
)
from server.services import Services
from tests.checkin_bodies import HIGH_RISK_CSSRS, checkin_body
from tests.clinic import Clinic, add_visit
from tests.conftest import Runner, SignIn

JSON = {"content-type": "application/json"}
WRITTEN = [CheckIn, CheckInVersion, Escalation, EscalationEvent, MeasureResult, Timer,
           VisitNote, Medication, MedicationChange]


def bounded(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


# --- bodies ----------------------------------------------------------------------------

# Raw JSON text for values json.dumps cannot write, or writes differently.
HOSTILE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, str(2**70),
           str(-(2**63) - 1), "1e308", "-0.0", '"\\ud800"', '"x\\udfff"', '"\\u0000"',
           '"a\\u0000b"', '{"\\u0000": 1}', '{"\\ud800": 1}', "[" * 1000 + "]" * 1000,
           '{"a":' * 100 + "1" + "}" * 100, '"' + "x" * 30_000 + '"', "true", "[]", "{}",
           '""', "null", "-1", "0", "1.5", '"   "', '"\\u202e\\u200b"']

scalars = (st.none() | st.booleans() | st.integers(-(2**40), 2**40)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=10)


class Raw:
    """A hostile value, written into the body as this JSON text."""

    def __init__(self, text: str) -> None:
        self.text = text


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(copy[head], rest, new)
    return copy


def dropped(value: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        if isinstance(value, dict):
            return {**value, head: dropped(value[head], rest)}
        copy = list(value)
        copy[head] = dropped(copy[head], rest)
        return copy
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != head}
    return [v for i, v in enumerate(value) if i != head]


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` with none to three changes: a part dropped, replaced by any JSON value or
    by a hostile one, or a key added; now and then any JSON value instead."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    body: Any = base
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(paths(body)))
        how = draw(st.sampled_from(["drop", "json", "hostile", "hostile", "add"]))
        if how == "drop" and where:
            body = dropped(body, where)
        elif how == "json":
            body = replaced(body, where, draw(json_values))
        elif how == "add":
            at = where if isinstance(draw_at(body, where), dict) else ()
            extra = {draw(st.text(max_size=12)): draw(json_values | st.just(Raw("NaN")))}
            body = replaced(body, at, {**draw_at(body, at), **extra}) \
                if isinstance(draw_at(body, at), dict) else body
        else:
            body = replaced(body, where, Raw(draw(st.sampled_from(HOSTILE))))
    return body


def draw_at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def encode(body: Any) -> bytes:
    """JSON as a browser's JSON.stringify sends it (ASCII escapes), hostile parts raw."""
    raws: list[str] = []

    def default(value: Any) -> str:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x01RAW{len(raws) - 1}\x01"
        raise TypeError(type(value).__name__)

    text = json.dumps(body, default=default)
    for n, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x01RAW{n}\x01"), raw)
    return text.encode("utf-8", "surrogatepass")


# --- what the database holds -----------------------------------------------------------


def snapshot(run: Runner, services: Services) -> dict[str, int]:
    async def count() -> dict[str, int]:
        async with services.transaction() as session:
            counts = {model.__tablename__: int(await session.scalar(
                select(func.count()).select_from(model)) or 0) for model in WRITTEN}
            counts["audit_success"] = int(await session.scalar(
                select(func.count()).select_from(AuditEntry)
                .where(AuditEntry.outcome == "success")) or 0)
            return counts
    return run(count)


def read(client: TestClient, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def check(client: TestClient, sign_in: SignIn, run: Runner, services: Services, *,
          method: str, url: str, body: bytes, reads: list[str], pages: list[str],
          as_: Any, staff: Any) -> int:
    """Send the body; the answer and the database must follow the rules above."""
    sign_in(as_)
    shown = [read(client, u) for u in reads]
    before = snapshot(run, services)  # after the reads: reading is audited too
    response = client.request(method, url, content=body, headers=JSON)
    assert response.status_code < 500, f"{response.status_code} {response.text[:300]}\n" \
        f"body: {body[:400]!r}"
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert error["code"] and error["message"], error
        assert snapshot(run, services) == before, \
            f"stored on {response.status_code} {error}: {body[:400]!r}"
        assert [read(client, u) for u in reads] == shown, body[:400]
    else:
        for u in reads:
            read(client, u)
        for who, page in [(as_, p) for p in pages] + [(staff, f"/visits/{url.split('/')[4]}")]:
            sign_in(who)
            assert client.get(page).status_code == 200, (page, body[:400])
        sign_in(as_)
    return response.status_code


# --- the tests -------------------------------------------------------------------------


def test_checkin_drafts_never_fail_and_refusals_store_nothing(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    url = f"/api/v1/visits/{clinic.visit_id}/checkin"
    base = checkin_body(cssrs=HIGH_RISK_CSSRS)
    statuses: list[int] = []

    @bounded(70)
    @given(body=mutated(base))
    def one(body: Any) -> None:
        statuses.append(check(
            client, sign_in, run, services, method="PUT", url=f"{url}/draft",
            body=encode(body), reads=[url], pages=[f"/visits/{clinic.visit_id}/checkin"],
            as_=clinic.patient, staff=clinic.prescriber))

    one()
    # Both sides were reached: drafts stored and drafts refused.
    print(sorted(Counter(statuses).items()))
    assert {s // 100 for s in statuses} == {2, 4}, statuses


def test_checkin_completions_never_fail_and_refusals_store_nothing(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    visit = {"id": clinic.visit_id}
    statuses: list[int] = []

    @bounded(50)
    @given(body=st.sampled_from([checkin_body(), checkin_body(cssrs=HIGH_RISK_CSSRS)])
           .flatmap(mutated))
    def one(body: Any) -> None:
        url = f"/api/v1/visits/{visit['id']}/checkin"
        status = check(client, sign_in, run, services, method="POST", url=url,
                       body=encode(body), reads=[url],
                       pages=[f"/visits/{visit['id']}/checkin"],
                       as_=clinic.patient, staff=clinic.prescriber)
        statuses.append(status)
        if status < 300:
            # Completed: the next completion goes to another visit of the patient.
            visit["id"] = run(add_visit, services, clinic.patient.id, clinic.prescriber.id,
                              timedelta(hours=1))

    one()
    print(sorted(Counter(statuses).items()))
    assert {s // 100 for s in statuses} == {2, 4}, statuses


def test_note_saves_never_fail_and_refusals_store_nothing(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    url = f"/api/v1/visits/{clinic.visit_id}/note"
    sign_in(clinic.prescriber)
    # The note row exists from the first save (until then a read shows an unsaved note
    # with a fresh time, which would differ between two reads).
    first = client.put(url, json={"version": 0, "sections": {"plan": "Continue."}})
    assert first.status_code == 200, first.text
    current = {"version": first.json()["version"]}
    statuses: list[int] = []

    @bounded(70)
    @given(base=st.fixed_dictionaries({
        "sections": st.fixed_dictionaries({}, optional={
            "plan": st.text(max_size=40), "assessment": st.text(max_size=40),
            "safety_risk_judgement": st.sampled_from(["low", "moderate", "high", ""]),
            "interval_history": st.text(max_size=40)}),
        "medication_changes": st.lists(st.fixed_dictionaries(
            {"action": st.sampled_from(["start", "stop", "increase", "decrease", "switch",
                                        "continue"]),
             "drug": st.sampled_from(["sertraline", "lithium", "clozapine", "x"])},
            optional={"dose": st.sampled_from(["50", "100", ""]),
                      "unit": st.sampled_from(["mg", "mcg"]), "reason": st.text(max_size=20),
                      "replaces": st.sampled_from(["fluoxetine", ""])}), max_size=2),
        "follow_up_days": st.none() | st.integers(0, 400)}), stale=st.integers(0, 9),
        data=st.data())
    def one(base: dict[str, Any], stale: int, data: st.DataObject) -> None:
        # Mostly the version the note is at (a save that can land), sometimes a stale one.
        base = {"version": current["version"] if stale else max(0, current["version"] - 1),
                **base}
        body = data.draw(mutated(base))
        status = check(client, sign_in, run, services, method="PUT", url=url,
                       body=encode(body), reads=[url], pages=[], as_=clinic.prescriber,
                       staff=clinic.prescriber)
        statuses.append(status)
        if status < 300:
            current["version"] = read(client, url)["version"]

    one()
    print(sorted(Counter(statuses).items()))
    assert {s // 100 for s in statuses} == {2, 4}, statuses
