"""The incident log's steps on a real store (SQLite and PostgreSQL): opening by hand and from
an alert (linked, and closed with "incident opened"), follow-up actions, closing, who sees
which incidents, the exports, and the audit record of every step."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts import alert_rows
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts
from proxy_addons.workflow import audit, incident_export, incident_log, incidents
from proxy_addons.workflow.incidents import Draft, IncidentError
from proxy_addons.workflow.unblocks import Actor
from tests.pg import db_url  # noqa: F401  (a fixture)

POLICY = Path(__file__).resolve().parents[1] / "data" / "policy" / "school.yaml"
T0 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
DSL = Actor("dsl", "10.20.0.5")
HEAD = Actor("head", "10.20.0.6")
SAFEGUARDING = frozenset({"safeguarding"})


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(POLICY)


def seed_alert(store: Store, user: str = "pupil", audience: str = "safeguarding") -> int:
    """An alert as alerts/dispatch keeps it; "staff" is a concern about a member of staff."""
    event = Event(
        kind="risk_phrase",
        severity=5,
        audience=Audience.SAFEGUARDING,
        summary="Risk phrase in a search",
        fields={"user": user, "ip": "10.30.0.7", "category": "adult"},
        fold_key=f"risk|{user}",
        at=T0,
    )
    with store.begin() as conn:
        return alert_rows.record(conn, event, [], timedelta(0), T0, audience=audience)


def draft(**changes: Any) -> Draft:
    values: dict[str, Any] = {
        "occurred_at": T0 - timedelta(hours=1),
        "location": "Year 6 classroom, laptop 12",
        "description": "Searched for how to hurt himself; the filter blocked it.",
        "action_taken": "Spoke to the pupil with the class teacher; parents called.",
        "category": "adult",
        "people": ("pupil",),
    }
    values.update(changes)
    return Draft(**values)


def trail(store: Store) -> list[tuple[str, str, str]]:
    return [(r.actor, r.action, r.subject) for r in audit.records(store)]


def alert_row(store: Store, alert_id: int) -> Any:
    with store.connect() as conn:
        return conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()


def test_an_incident_by_hand_keeps_every_field_and_who_recorded_it(store: Store) -> None:
    incident_id = incidents.open_incident(store, DSL, draft(), T0)
    found = incident_log.get(store, incident_id)
    assert found is not None
    assert (found.occurred_at, found.location, found.category, found.people) == (
        T0 - timedelta(hours=1),
        "Year 6 classroom, laptop 12",
        "adult",
        ("pupil",),
    )
    assert (found.recorded_by, found.recorded_at, found.state) == ("dsl", T0, incident_log.OPEN)
    assert found.alert_id is None and not found.about_staff
    assert trail(store) == [("dsl", incidents.OPENED, f"incident:{incident_id}")]
    assert audit.records(store)[0].address == "10.20.0.5"
    assert audit.verify(store).ok


def test_every_missing_field_is_named_at_once_and_nothing_is_saved(store: Store) -> None:
    with pytest.raises(IncidentError) as caught:
        incidents.open_incident(
            store, DSL, draft(occurred_at=None, location=" ", description="", action_taken=""), T0
        )
    assert set(caught.value.problems) == {"occurred_at", "location", "description", "action_taken"}
    with pytest.raises(IncidentError) as future:
        incidents.open_incident(store, DSL, draft(occurred_at=T0 + timedelta(days=1)), T0)
    assert "future" in future.value.problems["occurred_at"]
    assert incident_log.listing(store, incident_log.Filter()) == []
    assert trail(store) == []


def test_from_an_alert_links_it_and_closes_it_as_incident_opened(store: Store) -> None:
    alert_id = seed_alert(store)
    incident_id = incidents.open_incident(
        store, DSL, draft(), T0, alert_id=alert_id, audiences=SAFEGUARDING
    )
    row = alert_row(store, alert_id)
    assert (row.incident_id, row.state, row.outcome, row.closed_by) == (
        incident_id,
        alert_rows.CLOSED,
        "incident_opened",
        "dsl",
    )
    assert trail(store) == [
        ("dsl", incidents.OPENED, f"incident:{incident_id}"),
        ("dsl", "alert.close", f"alert:{alert_id}"),
        ("dsl", incidents.LINKED, f"alert:{alert_id}"),
    ]
    # One incident per alert: a second is refused, and nothing more is written.
    with pytest.raises(IncidentError, match="already has incident"):
        incidents.open_incident(store, DSL, draft(), T0, alert_id=alert_id, audiences=SAFEGUARDING)
    assert len(incident_log.listing(store, incident_log.Filter())) == 1


def test_an_alert_already_closed_is_linked_and_keeps_its_outcome(store: Store) -> None:
    alert_id = seed_alert(store)
    with store.begin() as conn:
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id)
            .values(state=alert_rows.CLOSED, outcome="spoke_to_pupil", closed_by="deputy")
        )
    incident_id = incidents.open_incident(
        store, DSL, draft(), T0, alert_id=alert_id, audiences=SAFEGUARDING
    )
    row = alert_row(store, alert_id)
    assert (row.incident_id, row.outcome, row.closed_by) == (
        incident_id,
        "spoke_to_pupil",
        "deputy",
    )


def test_an_alert_about_staff_is_the_headteachers_and_so_is_its_incident(store: Store) -> None:
    alert_id = seed_alert(store, user="teacher", audience="staff")
    with pytest.raises(IncidentError, match="no alert"):
        incidents.open_incident(store, DSL, draft(), T0, alert_id=alert_id, audiences=SAFEGUARDING)
    incident_id = incidents.open_incident(
        store,
        HEAD,
        draft(people=("teacher",)),
        T0,
        alert_id=alert_id,
        audiences=frozenset({"staff"}),
    )
    found = incident_log.get(store, incident_id)
    assert found is not None and found.about_staff
    assert incident_log.listing(store, incident_log.Filter()) == []  # the DSL's view
    assert [i.id for i in incident_log.listing(store, incident_log.Filter(staff=True))] == [
        incident_id
    ]


def test_follow_up_actions_are_added_done_and_the_incident_closed(store: Store) -> None:
    incident_id = incidents.open_incident(store, DSL, draft(), T0)
    later = T0 + timedelta(hours=2)
    action_id = incidents.add_action(
        store, DSL, incident_id, "Check in with the pupil", "Mrs Patel", date(2026, 3, 10), later
    )
    with pytest.raises(IncidentError, match="needs doing"):
        incidents.add_action(store, DSL, incident_id, "  ", "", None, later)
    incidents.mark_done(store, HEAD, incident_id, action_id, later + timedelta(days=1))
    with pytest.raises(IncidentError, match="not open"):
        incidents.mark_done(store, HEAD, incident_id, action_id, later + timedelta(days=1))
    incidents.close(store, DSL, incident_id, later + timedelta(days=2))
    with pytest.raises(IncidentError, match="closed"):
        incidents.add_action(store, DSL, incident_id, "More", "", None, later)
    found = incident_log.get(store, incident_id)
    assert found is not None
    [action] = found.actions
    assert (action.owner, action.due, action.done_by) == ("Mrs Patel", date(2026, 3, 10), "head")
    assert (found.state, found.closed_by, found.open_actions) == (incident_log.CLOSED, "dsl", 0)
    subject = f"incident:{incident_id}"
    assert trail(store) == [
        ("dsl", incidents.OPENED, subject),
        ("dsl", incidents.ACTION_ADDED, subject),
        ("head", incidents.ACTION_DONE, subject),
        ("dsl", incidents.CLOSED_ACTION, subject),
    ]


def test_the_log_filters_by_dates_state_and_person(store: Store) -> None:
    first = incidents.open_incident(store, DSL, draft(occurred_at=T0 - timedelta(days=30)), T0)
    second = incidents.open_incident(store, DSL, draft(people=("pupil2", "Pupil3")), T0)
    incidents.close(store, DSL, first, T0)

    def ids(**f: Any) -> list[int]:
        return [i.id for i in incident_log.listing(store, incident_log.Filter(**f))]

    assert ids() == [second, first]  # latest first
    assert ids(start=T0 - timedelta(days=2)) == [second]
    assert ids(end=T0 - timedelta(days=2)) == [first]
    assert ids(state=incident_log.CLOSED) == [first]
    assert ids(person="PUPIL3") == [second]
    assert ids(person="pupil") == [first]


def test_exports_are_csv_for_record_systems_and_json_with_everything(
    store: Store, policy: Policy
) -> None:
    incident_id = incidents.open_incident(
        store, DSL, draft(description='=HYPERLINK("http://x")', people=("pupil", "@pupil2")), T0
    )
    incidents.add_action(store, DSL, incident_id, "Tell parents", "dsl", date(2026, 3, 4), T0)
    found = incident_log.listing(store, incident_log.Filter())
    rows = list(csv.reader(io.StringIO(incident_export.to_csv(policy, found))))
    assert tuple(rows[0]) == incident_export.CSV_COLUMNS
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["description"] == '\'=HYPERLINK("http://x")'  # not run as a formula
    assert row["people"] == "pupil; @pupil2"
    assert row["occurred"] == "2026-03-03 09:00"  # school time (GMT in March)
    assert row["category_label"] == "Adult content"
    assert row["follow_up_actions"] == "Tell parents; owner dsl; due 2026-03-04; not done"
    body = json.loads(incident_export.to_json(policy, found, T0))
    [one] = body["incidents"]
    assert one["description"] == '=HYPERLINK("http://x")'  # JSON is exact
    assert one["occurred_at"] == "2026-03-03T09:00:00+00:00"
    assert one["actions"][0]["due"] == "2026-03-04"
    assert body["timezone"] == "Europe/London"
    incident_export.record_export(store, DSL, "csv", found, {"from": "2026-03-01"}, T0)
    last = audit.records(store)[-1]
    assert (last.action, last.detail["ids"], last.detail["from"]) == (
        incident_export.EXPORTED,
        [incident_id],
        "2026-03-01",
    )
