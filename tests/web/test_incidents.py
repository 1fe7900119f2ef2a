"""Incidents through Flask's test client on a real store: who may keep the log, clear errors
that keep what was typed, opening from an alert, follow-up actions, the exports, and the
audit record of every look and export."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from proxy_addons.alerts import alert_rows
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.store.schema import alerts
from proxy_addons.web.console_forms import labelled_choices
from proxy_addons.web.incidents import people_named
from proxy_addons.workflow import audit, incident_export, incident_log, incidents, subject_access
from proxy_addons.workflow.accounts import add_account
from tests.web.test_people import NOW, add_alert
from tests.web.test_webapp import (  # noqa: F401
    PASSWORD,
    Web,
    make_web,
    page_token,
    seeded_db,
    sign_in,
)

FILLED = {
    "occurred_at": "2026-03-03T10:15",
    "location": "ICT suite, PC 4",
    "category": "cyberbullying",
    "people": "pupil, Pupil2",
    "description": "Unkind messages about another pupil in a shared document.",
    "action_taken": "Document removed; both pupils spoken to.",
}


@pytest.fixture
def web(tmp_path: Path, seeded_db: Path) -> Iterator[Web]:  # noqa: F811
    result = make_web(tmp_path / "var", seeded_db)
    add_account(result.store, "head", PASSWORD, ["headteacher"], email="head@test.example")
    yield result
    result.store.dispose()


def post(client: FlaskClient, path: str, form_page: str, **fields: str) -> Any:
    fields["csrf_token"] = page_token(client, form_page)
    return client.post(path, data=fields)


def create(client: FlaskClient, alert: int | None = None, **changes: str) -> Any:
    fields = {**FILLED, **changes}
    new_page = "/incidents/new" + (f"?alert={alert}" if alert else "")
    if alert:
        fields["alert"] = str(alert)
    return post(client, "/incidents/new", new_page, **fields)


def created_id(answer: Any) -> int:
    assert answer.status_code == 303, answer.get_data(as_text=True)
    found = re.search(r"/incidents/(\d+)$", answer.headers["Location"])
    assert found
    return int(found.group(1))


def actions_of(web: Web, prefix: str) -> list[tuple[str, str, str]]:
    return [
        (r.actor, r.action, r.subject)
        for r in audit.records(web.store)
        if r.action.startswith(prefix)
    ]


def test_the_dsls_team_and_the_headteacher_keep_the_log(web: Web) -> None:
    for name in ("teacher", "tech"):
        assert sign_in(web, name).get("/incidents").status_code == 403
    for name in ("dsl", "deputy", "head"):
        client = sign_in(web, name)
        html = client.get("/incidents").get_data(as_text=True)
        assert "No incidents recorded yet" in html
        assert 'href="/incidents"' in html  # in the menu


def test_a_new_incident_names_every_missing_field_and_keeps_the_rest(web: Web) -> None:
    client = sign_in(web, "dsl")
    answer = create(client, location="", description="", occurred_at="yesterday-ish")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "The incident is not saved yet" in html
    for message in ("is not a time", "Say where it happened", "Describe what happened"):
        assert message in html
    assert "Document removed; both pupils spoken to." in html  # kept as typed
    assert 'value="pupil, Pupil2"' in html
    assert incident_log.listing(web.store, incident_log.Filter()) == []


def test_by_hand_the_recorder_is_the_signed_in_person(web: Web) -> None:
    client = sign_in(web, "deputy")
    incident_id = created_id(create(client))
    found = incident_log.get(web.store, incident_id)
    assert found is not None
    assert (found.recorded_by, found.people, found.category) == (
        "deputy",
        ("pupil", "pupil2"),
        "cyberbullying",
    )
    assert found.occurred_at.isoformat() == "2026-03-03T10:15:00+00:00"  # school time, GMT
    html = client.get(f"/incidents/{incident_id}").get_data(as_text=True)
    assert "Recorded by</dt><dd>deputy" in html
    assert "Cyberbullying" in html
    assert actions_of(web, "incident.") == [
        ("deputy", incidents.OPENED, f"incident:{incident_id}"),
        ("deputy", "incident.view", f"incident:{incident_id}"),
    ]


def test_from_an_alert_prefilled_linked_and_the_alert_closed(web: Web) -> None:
    alert_id = add_alert(web, "pupil")
    client = sign_in(web, "dsl")
    html = client.get(f"/incidents/new?alert={alert_id}").get_data(as_text=True)
    assert f"From alert {alert_id}" in html
    assert 'name="people" value="pupil"' in html
    assert "Risk phrase in a search (safeguarding)</textarea>" in html
    assert re.search(r'name="category">.*?<option value="adult" selected>', html, re.S)
    incident_id = created_id(create(client, alert=alert_id))
    with web.store.connect() as conn:
        row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()
    assert (row.incident_id, row.state, row.outcome, row.closed_by) == (
        incident_id,
        "closed",
        "incident_opened",
        "dsl",
    )
    assert ("dsl", "alert.close", f"alert:{alert_id}") in actions_of(web, "alert.")
    # The same alert can't open a second incident; the page says why.
    again = create(client, alert=alert_id)
    assert again.status_code == 400
    assert f"already has incident {incident_id}" in again.get_data(as_text=True)


def test_an_alert_about_staff_is_for_the_headteacher_only(web: Web) -> None:
    alert_id = add_alert(web, "teacher", audience="staff")
    dsl = sign_in(web, "dsl")
    assert dsl.get(f"/incidents/new?alert={alert_id}").status_code == 404
    head = sign_in(web, "head")
    incident_id = created_id(create(head, alert=alert_id, people="teacher"))
    assert head.get(f"/incidents/{incident_id}").status_code == 200
    assert dsl.get(f"/incidents/{incident_id}").status_code == 404
    assert f"Incident {incident_id}" not in dsl.get("/incidents").get_data(as_text=True)
    assert f"Incident {incident_id}" in head.get("/incidents").get_data(as_text=True)


def test_one_recorded_by_hand_as_about_staff_is_for_the_headteacher_only(web: Web) -> None:
    """A DSL told of a concern about a teacher records it for the headteacher: from then on
    it is the headteacher's alone, in the log, its page, its exports and subject access."""
    dsl = sign_in(web, "dsl")
    assert 'name="about_staff"' in dsl.get("/incidents/new").get_data(as_text=True)
    answer = create(dsl, people="teacher", about_staff="yes")
    assert answer.status_code == 303 and answer.headers["Location"] == "/incidents"
    listed = dsl.get("/incidents").get_data(as_text=True)
    assert "only the headteacher can open it" in listed
    [found] = incident_log.listing(web.store, incident_log.Filter(staff=True))
    assert found.about_staff and found.people == ("teacher",)
    assert dsl.get(f"/incidents/{found.id}").status_code == 404
    assert f'href="/incidents/{found.id}"' not in listed
    assert f'href="/incidents/{found.id}"' in sign_in(web, "head").get("/incidents").get_data(
        as_text=True
    )
    head = sign_in(web, "head")
    assert head.get(f"/incidents/{found.id}").status_code == 200
    hidden = subject_access.gather(
        web.store, subject_access.Subject("teacher"), staff_concerns=False
    )
    assert hidden["incidents"] == []
    kept = subject_access.gather(web.store, subject_access.Subject("teacher"))
    assert [row["id"] for row in kept["incidents"]] == [found.id]
    [opened] = [r for r in audit.records(web.store) if r.action == incidents.OPENED]
    assert opened.detail.get("about_staff") is True


def test_follow_up_actions_and_closing(web: Web) -> None:
    client = sign_in(web, "dsl")
    incident_id = created_id(create(client))
    here = f"/incidents/{incident_id}"
    missing = post(client, f"{here}/actions", here, text="", owner="", due="")
    assert missing.status_code == 400
    assert "Say what needs doing" in missing.get_data(as_text=True)
    bad_day = post(client, f"{here}/actions", here, text="Tell parents", due="next week")
    assert "The due date is not a date" in bad_day.get_data(as_text=True)
    added = post(
        client, f"{here}/actions", here, text="Tell parents", owner="dsl", due="2026-03-05"
    )
    assert added.status_code == 303
    found = incident_log.get(web.store, incident_id)
    assert found is not None
    [action] = found.actions
    html = client.get(here).get_data(as_text=True)
    assert "Tell parents" in html and "(overdue)" in html
    done = post(client, f"{here}/actions/{action.id}/done", here)
    assert done.status_code == 303
    closed = post(client, f"{here}/close", here)
    assert closed.status_code == 303
    html = client.get(here).get_data(as_text=True)
    assert "Done by dsl" in html and "Closed by</dt><dd>dsl" in html
    assert "Add a follow-up action" not in html
    subject = f"incident:{incident_id}"
    steps = [a for a in actions_of(web, "incident.") if a[1] != "incident.view"]
    assert steps == [
        ("dsl", incidents.OPENED, subject),
        ("dsl", incidents.ACTION_ADDED, subject),
        ("dsl", incidents.ACTION_DONE, subject),
        ("dsl", incidents.CLOSED_ACTION, subject),
    ]


def test_exports_csv_and_json_audited_and_formula_safe(web: Web) -> None:
    client = sign_in(web, "dsl")
    first = created_id(create(client, description='=HYPERLINK("http://evil")'))
    created_id(create(client, occurred_at="2026-02-01T09:00"))
    answer = post(client, "/incidents/export", "/incidents", format="csv", **{"from": "2026-03-01"})
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert tuple(rows[0]) == incident_export.CSV_COLUMNS
    assert len(rows) == 2  # only March's
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["description"] == '\'=HYPERLINK("http://evil")'
    assert (row["incident_id"], row["occurred"]) == (str(first), "2026-03-03 10:15")
    one = post(client, f"/incidents/{first}/export", f"/incidents/{first}", format="json")
    assert one.mimetype == "application/json"
    [exported] = json.loads(one.get_data(as_text=True))["incidents"]
    assert exported["id"] == first and exported["people"] == ["pupil", "pupil2"]
    records = [r for r in audit.records(web.store) if r.action == incident_export.EXPORTED]
    assert [(r.actor, r.detail["format"], r.detail["ids"]) for r in records] == [
        ("dsl", "csv", [first]),
        ("dsl", "json", [first]),
    ]
    assert records[0].detail["from"] == "2026-03-01"


def test_people_involved_are_kept_whole_one_per_line_or_comma() -> None:
    typed = "pupil7, the pupil at 127.0.0.1 (Year 2 iPad)\n  Mr  Smith ;pupil8\n\n"
    assert people_named(typed) == [
        "pupil7",
        "the pupil at 127.0.0.1 (Year 2 iPad)",
        "Mr Smith",
        "pupil8",
    ]


@pytest.mark.parametrize(
    ("category", "kind"),
    [("adult", "adult"), ("Social networks", "social"), ("no such kind", "")],
)
def test_the_kind_is_prefilled_from_the_alerts_category_or_its_label(
    web: Web, category: str, kind: str
) -> None:
    event = Event(
        kind="high_risk_block",
        severity=4,
        audience=Audience.SAFEGUARDING,
        summary="Blocked",
        fields={"user": "pupil", "category": category},
        fold_key=f"block|{category}",
        at=NOW,
    )
    with web.store.begin() as conn:
        alert_id = alert_rows.record(conn, event, [], timedelta(0), NOW)
    html = sign_in(web, "dsl").get(f"/incidents/new?alert={alert_id}").get_data(as_text=True)
    chosen = re.search(r'<option value="([^"]*)" selected>', html)
    assert (chosen.group(1) if chosen else "") == kind


def test_kinds_sharing_a_label_say_which_is_which() -> None:
    labels = {"adult": "Adult content", "lingerie": "Adult content", "games": "Games"}
    assert labelled_choices(labels) == [
        ("Adult content (adult)", "adult"),
        ("Adult content (lingerie)", "lingerie"),
        ("Games", "games"),
    ]
