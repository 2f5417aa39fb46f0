"""The licences and DEA registrations page (web/pages/credentials.py), by the real app
on SQLite and PostgreSQL: the clinic's admins record any prescriber's, every problem is
shown by its field and nothing half-saved, and the change is audited and announced like
the API's; the prescriber, whom the signing gate checks against them, reads their own
list and cannot change it."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from server.models import AuditEntry, PrescriberCredential
from server.services import Services
from tests.clinic import Clinic
from tests.conftest import Runner, SignIn
from tests.test_note_panel_pages import Page

GOOD_DEA = "AB1234563"   # 1+3+5 + 2*(2+4+6) = 33: check digit 3
BAD_DEA = "AB1234567"


def url(clinic: Clinic, prescriber_id: int | None = None) -> str:
    return f"/prescribers/{prescriber_id or clinic.prescriber.id}/credentials"


def row(state: str = "", license_number: str = "", license_expires_on: str = "",
        dea_number: str = "", dea_expires_on: str = "") -> dict[str, str]:
    return {"state": state, "license_number": license_number,
            "license_expires_on": license_expires_on, "dea_number": dea_number,
            "dea_expires_on": dea_expires_on}


def form(csrf: str, *rows: dict[str, str], **extra: Any) -> list[tuple[str, str]]:
    """The form as a browser posts it: each row's fields in document order."""
    posted = [("csrf_token", csrf)]
    for r in rows:
        posted += list(r.items())
    for name, value in extra.items():
        for v in value if isinstance(value, list) else [value]:
            posted.append((name, str(v)))
    return posted


def shown_rows(html: str) -> list[dict[str, str | None]]:
    """The form's rows, without the template JavaScript copies for "Add another state"."""
    return [r for r in Page(html).by_testid["credential-row"] if "data-template" not in r]


def main_of(html: str) -> str:
    """The page's own content, without the layout's menu and dialogs."""
    return html.split("<main", 1)[1].split("</main>", 1)[0]


def post(client: TestClient, target: str, data: list[tuple[str, str]]) -> Any:
    body = "&".join(f"{k}={v}" for k, v in data)
    return client.post(target, content=body, follow_redirects=False,
                       headers={"content-type": "application/x-www-form-urlencoded"})


def stored(run: Runner, services: Services, prescriber_id: int) -> list[tuple[str, str | None]]:
    async def query() -> list[tuple[str, str | None]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(PrescriberCredential).where(
                PrescriberCredential.prescriber_id == prescriber_id)
                .order_by(PrescriberCredential.state))).all()
            return [(r.state, r.dea_number) for r in rows]

    return run(query)


def audited(run: Runner, services: Services, actor_id: int) -> list[dict[str, Any]]:
    async def query() -> list[dict[str, Any]]:
        async with services.transaction() as session:
            rows = (await session.scalars(select(AuditEntry).where(
                AuditEntry.actor_id == actor_id, AuditEntry.action == "update",
                AuditEntry.resource_type == "prescriber_credentials"))).all()
            return [{"resource_id": r.resource_id, **(r.detail or {})} for r in rows]

    return run(query)


def test_an_admin_records_a_licence_and_the_prescriber_reads_it(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.admin)
    page = client.get(url(clinic))
    assert page.status_code == 200
    # One blank row to fill in, labelled.
    assert len(shown_rows(page.text)) == 1
    assert '<label for="cred-0-dea_number">' in page.text

    saved = post(client, url(clinic), form(
        csrf, row("NY", "NY-301122", "2035-06-30", GOOD_DEA.lower(), "2035-01-31"),
        row("MA", "MA-4411", "2020-01-31"), row()))
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"{url(clinic)}?saved=1"
    assert stored(run, services, clinic.prescriber.id) == [("MA", None), ("NY", GOOD_DEA)]
    [entry] = audited(run, services, clinic.admin.id)
    assert entry["resource_id"] == str(clinic.prescriber.id)
    shown = client.get(saved.headers["location"])
    parsed = Page(shown.text)
    assert parsed.by_testid["credentials-done"]
    assert [r["data-state"] for r in shown_rows(shown.text)] == ["MA", "NY", ""]
    assert parsed.by_id["cred-1-dea_number"]["value"] == GOOD_DEA
    assert parsed.by_id["cred-1-license_expires_on"]["value"] == "2035-06-30"

    # The prescriber, from their own menu: the same list, read only.
    sign_in(clinic.prescriber)
    day = client.get("/day")
    assert f'href="{url(clinic)}"' in day.text
    mine = client.get(url(clinic))
    assert mine.status_code == 200
    assert "Your licences and DEA registrations" in mine.text
    parsed = Page(mine.text)
    rows = parsed.by_testid["credential-row"]
    assert [r["data-state"] for r in rows] == ["MA", "NY"]
    assert [r["_tag"] for r in rows] == ["li", "li"]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", main_of(mine.text)))
    assert "NY-301122" in text and GOOD_DEA in text
    assert "expires 30 Jun 2035" in text and "expires 31 Jan 2035" in text
    # Massachusetts' licence has expired and there is no DEA registration there.
    assert len(parsed.by_testid["license-expired"]) == 1
    assert "dea-expired" not in parsed.by_testid
    assert "none recorded in this state" in text
    # Who records them, and whom to ask.
    assert "ask your clinic's admins" in text
    # Nothing to edit: no form, field, Save, Add or Remove, and not the form's script.
    for tag in ("<form", "<input", "<select", "<button"):
        assert tag not in main_of(mine.text), tag
    for testid in ("credentials-form", "credentials-save", "credential-add",
                   "credential-remove"):
        assert testid not in parsed.by_testid, testid
    assert "credentials-form.js" not in mine.text
    # The API reads the same.
    api = client.get(f"/api/v1/prescribers/{clinic.prescriber.id}/credentials").json()
    assert [(c["state"], c["dea_number"]) for c in api["credentials"]] == [
        ("MA", None), ("NY", GOOD_DEA)]


def test_a_prescriber_cannot_change_their_own_by_the_page(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.admin)
    assert post(client, url(clinic), form(csrf, row("NY", "NY-1"))).status_code == 303
    csrf = sign_in(clinic.prescriber)
    shown = Page(client.get(url(clinic)).text).by_testid["credential-row"]
    assert [r["data-state"] for r in shown] == ["NY"]
    for attempt in (
        form(csrf, row("NY", "NY-1"), row("TX", "TX-1", dea_number=GOOD_DEA)),  # added
        form(csrf, row("NY", "NY-2")),                                         # changed
        form(csrf, row("NY", "NY-1"), remove="0"),                             # removed
        form(csrf, row("NY", "NY-1"), row(), add="1"),                         # a new row
    ):
        refused = post(client, url(clinic), attempt)
        assert refused.status_code == 403, refused.text[:300]
        assert refused.headers["content-type"].startswith("text/html")
        assert "recorded by the clinic&#39;s admins" in refused.text
        assert stored(run, services, clinic.prescriber.id) == [("NY", None)]
    assert audited(run, services, clinic.prescriber.id) == []


def test_a_prescriber_with_none_recorded_is_told_whom_to_ask(
    client: TestClient, clinic: Clinic, sign_in: SignIn
) -> None:
    sign_in(clinic.prescriber)
    page = client.get(url(clinic))
    assert page.status_code == 200
    parsed = Page(page.text)
    assert parsed.by_testid["credentials-empty"]
    assert parsed.by_testid["credentials-who"]
    assert "credential-row" not in parsed.by_testid
    assert "<form" not in main_of(page.text)


def test_every_problem_is_shown_by_its_field_and_nothing_is_saved(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.admin)
    assert post(client, url(clinic), form(csrf, row("MA", "MA-1"))).status_code == 303
    refused = post(client, url(clinic), form(
        csrf,
        row("NY", "NY-1", dea_number=BAD_DEA),      # check digit
        row("ZZ", "ZZ-1"),                          # no such state
        row("NY", "NY-2"),                          # NY again
        row("VT", ""),                              # no licence number
        row("NJ", "NJ-1", dea_expires_on="2027-01-01"),  # an expiry without its DEA
    ))
    assert refused.status_code == 422
    page = Page(refused.text)
    errors = {(e["id"]): e for e in page.by_testid["credential-field-error"]}
    assert set(errors) == {"cred-0-dea_number-error", "cred-1-state-error",
                           "cred-2-state-error", "cred-3-license_number-error"}
    text = refused.text
    assert re.search(r'id="cred-0-dea_number-error"[^>]*>This DEA number&#39;s check digit '
                     r"does not match", text)
    assert re.search(r'id="cred-1-state-error"[^>]*>Choose the US state', text)
    assert re.search(r'id="cred-2-state-error"[^>]*>New York is already listed above', text)
    assert re.search(r'id="cred-3-license_number-error"[^>]*>Enter the licence number', text)
    # Each field says it is wrong and where the message is.
    field = page.by_id["cred-0-dea_number"]
    assert field["aria-invalid"] == "true"
    assert "cred-0-dea_number-error" in str(field["aria-describedby"])
    # What was typed stays, to correct; the top message leads to the first field.
    assert field["value"] == BAD_DEA
    assert 'href="#cred-0-dea_number"' in text
    assert stored(run, services, clinic.prescriber.id) == [("MA", None)]

    # With the others right, the domain's own rule is shown by its field too.
    refused = post(client, url(clinic), form(
        csrf, row("NY", "NY-1", dea_number=GOOD_DEA),
        row("NJ", "NJ-1", dea_expires_on="2027-01-01")))
    assert refused.status_code == 422
    assert re.search(r'id="cred-1-dea_number-error"[^>]*>Give the DEA number this expiry',
                     refused.text)
    assert stored(run, services, clinic.prescriber.id) == [("MA", None)]


def test_removing_a_row_and_adding_one_without_javascript(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.admin)
    both = (row("MA", "MA-1", dea_number=GOOD_DEA), row("NY", "NY-1"))
    assert post(client, url(clinic), form(csrf, *both, row())).status_code == 303
    page = client.get(url(clinic))
    assert len(Page(page.text).by_testid["credential-remove"]) == 2

    # "Add another state" without JavaScript: the rows as typed and a blank one, unsaved.
    added = post(client, url(clinic), form(csrf, both[0], row("NY", "NY-9"), row(),
                                           add="1"))
    assert added.status_code == 200
    assert [r["data-state"] for r in shown_rows(added.text)] == ["MA", "NY", ""]
    assert 'value="NY-9"' in added.text
    assert stored(run, services, clinic.prescriber.id) == [("MA", GOOD_DEA), ("NY", None)]

    removed = post(client, url(clinic), form(csrf, *both, row(), remove="0"))
    assert removed.status_code == 303
    assert stored(run, services, clinic.prescriber.id) == [("NY", None)]
    shown = client.get(removed.headers["location"])
    assert "Removed: Massachusetts." in shown.text
    assert post(client, url(clinic), form(csrf, both[1], remove="7")).status_code == 422


def test_an_admin_keeps_any_prescribers_and_nobody_else_sees_them(
    client: TestClient, clinic: Clinic, sign_in: SignIn, run: Runner, services: Services
) -> None:
    csrf = sign_in(clinic.admin)
    accounts = client.get("/admin")
    # A link for each prescriber, none for other accounts.
    assert f'href="{url(clinic)}"' in accounts.text
    assert f'href="{url(clinic, clinic.other_prescriber.id)}"' in accounts.text
    assert f'href="{url(clinic, clinic.coordinator.id)}"' not in accounts.text
    page = client.get(url(clinic))
    assert page.status_code == 200
    assert f"{clinic.prescriber.name}: licences and DEA registrations" in page.text
    saved = post(client, url(clinic), form(csrf, row("CT", "CT-77", dea_number=GOOD_DEA)))
    assert saved.status_code == 303
    assert stored(run, services, clinic.prescriber.id) == [("CT", GOOD_DEA)]
    assert audited(run, services, clinic.admin.id)[0]["resource_id"] == str(
        clinic.prescriber.id)
    # Not a prescriber: there is no such page.
    assert client.get(url(clinic, clinic.coordinator.id)).status_code == 404

    for other in (clinic.other_prescriber, clinic.coordinator, clinic.patient):
        csrf = sign_in(other)
        assert client.get(url(clinic)).status_code == 403
        refused = post(client, url(clinic), form(csrf, row("CT", "CT-1")))
        assert refused.status_code == 403
    assert stored(run, services, clinic.prescriber.id) == [("CT", GOOD_DEA)]
