"""What the DSL does with an alert, on real SQLite and PostgreSQL: acknowledge, close with an
outcome, reopen; one of two people acting at once wins and the other is told; each step in
the audit trail; and the reads the console makes (filters, audiences, the timeline)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts import alert_rows
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log, alerts, audit_log
from proxy_addons.workflow import alert_cases, alert_queries, audit
from proxy_addons.workflow.alert_cases import AlertCaseError, AlertMoved
from proxy_addons.workflow.alert_queries import Filters
from proxy_addons.workflow.unblocks import Actor
from tests.pg import db_url  # noqa: F401  (a fixture)

T0 = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
DSL = Actor("dsl", "10.20.0.5")
DEPUTY = Actor("deputy", "10.20.0.6")
SAFEGUARDING = frozenset({"safeguarding"})


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


def raise_one(
    store: Store,
    *,
    kind: str = "risk_phrase",
    severity: int = 4,
    audience: Audience = Audience.SAFEGUARDING,
    fields: dict[str, str] | None = None,
    at: datetime = T0,
    summary: str = "Risk phrase in a search: Self-harm (severity 4)",
    key: str | None = None,
    stored_audience: str | None = None,
) -> int:
    """An alert as raise_alert records it (no channel), raised at `at`."""
    if fields is None:
        fields = {
            "user": "Pupil7",
            "device": "10.10.3.7",
            "search": "how to hurt myself",
            "category": "Self-harm",
        }
    event = Event(
        kind=kind,
        severity=severity,
        audience=audience,
        summary=summary,
        fields=fields,
        fold_key=key or f"{kind}|{at.isoformat()}|{summary}",
        at=at,
        timezone="Europe/London",
    )
    with store.begin() as conn:
        return alert_rows.record(
            conn, event, [], timedelta(minutes=10), at, audience=stored_audience
        )


def row_of(store: Store, alert_id: int) -> Any:
    with store.connect() as conn:
        return conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()


def trail(store: Store) -> list[audit.AuditRecord]:
    return audit.records(store)


def test_acknowledge_then_close_with_an_outcome_each_audited(store: Store) -> None:
    alert_id = raise_one(store)
    alert_cases.acknowledge(store, DSL, alert_id, T0 + timedelta(minutes=3))
    row = row_of(store, alert_id)
    assert (row.state, row.acknowledged_by) == ("acknowledged", "dsl")
    assert row.acknowledged_at == T0 + timedelta(minutes=3)

    alert_cases.close(
        store,
        DSL,
        alert_id,
        expected="acknowledged",
        outcome="spoke_to_pupil",
        notes="  Spoke to them with their class teacher; parents told.  ",
        now=T0 + timedelta(minutes=40),
    )
    row = row_of(store, alert_id)
    assert (row.state, row.outcome, row.closed_by) == ("closed", "spoke_to_pupil", "dsl")
    assert row.notes == "Spoke to them with their class teacher; parents told."
    assert row.closed_at == T0 + timedelta(minutes=40)

    records = trail(store)
    assert [(r.action, r.actor, r.subject, r.address) for r in records] == [
        ("alert.acknowledge", "dsl", f"alert:{alert_id}", "10.20.0.5"),
        ("alert.close", "dsl", f"alert:{alert_id}", "10.20.0.5"),
    ]
    # The outcome is in the trail; the notes (about a pupil) only on the purgeable row.
    assert records[1].detail == {"from": "acknowledged", "outcome": "spoke_to_pupil", "notes": True}
    assert audit.verify(store).ok


def test_a_new_alert_can_be_closed_straight_away(store: Store) -> None:
    alert_id = raise_one(store)
    alert_cases.close(
        store, DSL, alert_id, expected="new", outcome="false_positive", notes="", now=T0
    )
    row = row_of(store, alert_id)
    assert (row.state, row.outcome, row.notes, row.acknowledged_by) == (
        "closed",
        "false_positive",
        None,
        None,
    )


@pytest.mark.parametrize("outcome", ["referred", "incident_opened"])
def test_referred_and_incident_opened_need_notes(store: Store, outcome: str) -> None:
    alert_id = raise_one(store)
    with pytest.raises(AlertCaseError, match="needs notes"):
        alert_cases.close(
            store, DSL, alert_id, expected="new", outcome=outcome, notes="   ", now=T0
        )
    assert row_of(store, alert_id).state == "new"
    assert trail(store) == []


def test_an_unknown_outcome_or_overlong_notes_are_refused(store: Store) -> None:
    alert_id = raise_one(store)
    with pytest.raises(AlertCaseError, match="outcome"):
        alert_cases.close(store, DSL, alert_id, expected="new", outcome="shrug", notes="", now=T0)
    with pytest.raises(AlertCaseError, match="too long"):
        alert_cases.close(
            store,
            DSL,
            alert_id,
            expected="new",
            outcome="no_concern",
            notes="x" * (alert_cases.MAX_NOTES + 1),
            now=T0,
        )
    assert row_of(store, alert_id).state == "new"


def test_a_closed_alert_cannot_be_acknowledged(store: Store) -> None:
    alert_id = raise_one(store)
    alert_cases.close(store, DSL, alert_id, expected="new", outcome="no_concern", notes="", now=T0)
    with pytest.raises(AlertMoved, match="dsl closed this alert first .No concern.: it can't"):
        alert_cases.acknowledge(store, DEPUTY, alert_id, T0)
    assert row_of(store, alert_id).acknowledged_by is None
    assert [r.action for r in trail(store)] == ["alert.close"]


def test_of_two_people_closing_from_the_same_page_one_wins_and_the_other_is_told(
    store: Store,
) -> None:
    alert_id = raise_one(store)
    # Both opened the page while it was new; the DSL acknowledges, then the deputy closes.
    alert_cases.acknowledge(store, DSL, alert_id, T0)
    with pytest.raises(AlertMoved, match="dsl acknowledged this alert while you had it open"):
        alert_cases.close(
            store, DEPUTY, alert_id, expected="new", outcome="no_concern", notes="", now=T0
        )
    alert_cases.close(
        store, DSL, alert_id, expected="acknowledged", outcome="referred", notes="To MASH", now=T0
    )
    with pytest.raises(AlertMoved, match=r"dsl closed this alert first \(Referred\)\."):
        alert_cases.close(
            store, DEPUTY, alert_id, expected="acknowledged", outcome="no_concern", notes="", now=T0
        )
    row = row_of(store, alert_id)
    assert (row.outcome, row.notes, row.closed_by) == ("referred", "To MASH", "dsl")


def test_many_acknowledging_at_once_exactly_one_wins(store: Store) -> None:
    alert_id = raise_one(store)
    people = [Actor(f"dsl{i}", None) for i in range(6)]
    start = threading.Barrier(len(people))
    won: list[str] = []
    told: list[str] = []

    def act(person: Actor) -> None:
        start.wait()
        try:
            alert_cases.acknowledge(store, person, alert_id, T0)
            won.append(person.name)
        except AlertMoved as exc:
            told.append(str(exc))

    threads = [threading.Thread(target=act, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(told) == len(people) - 1
    assert all(text == f"{won[0]} acknowledged this alert first." for text in told)
    assert row_of(store, alert_id).acknowledged_by == won[0]
    assert [r.actor for r in trail(store)] == won


def test_reopen_needs_a_reason_and_leaves_it_acknowledged_by_the_reopener(store: Store) -> None:
    alert_id = raise_one(store)
    alert_cases.close(
        store, DSL, alert_id, expected="new", outcome="no_concern", notes="Looked fine", now=T0
    )
    with pytest.raises(AlertCaseError, match="why"):
        alert_cases.reopen(store, DEPUTY, alert_id, reason="  ", now=T0)
    later = T0 + timedelta(days=1)
    alert_cases.reopen(store, DEPUTY, alert_id, reason="Class teacher raised it again", now=later)
    row = row_of(store, alert_id)
    assert (row.state, row.acknowledged_by, row.outcome, row.closed_by) == (
        "acknowledged",
        "deputy",
        None,
        None,
    )
    assert row.notes == "Looked fine"  # kept for whoever closes it next
    with pytest.raises(AlertMoved, match="open again already: deputy has it"):
        alert_cases.reopen(store, DSL, alert_id, reason="same", now=later)
    assert trail(store)[-1].detail == {"from": "closed", "reason": "Class teacher raised it again"}


def test_no_such_alert(store: Store) -> None:
    with pytest.raises(AlertCaseError, match="no such alert"):
        alert_cases.acknowledge(store, DSL, 999, T0)


def test_close_in_takes_the_callers_transaction(store: Store) -> None:
    alert_id = raise_one(store)
    with pytest.raises(RuntimeError), store.begin() as conn:
        alert_cases.close_in(
            conn,
            DSL,
            alert_id,
            expected="new",
            outcome="incident_opened",
            notes="Incident 4",
            now=T0,
        )
        raise RuntimeError("the incident could not be saved")
    assert row_of(store, alert_id).state == "new"  # rolled back with the caller's work
    assert trail(store) == []


def test_history_reads_every_alert_step_from_the_trail(store: Store) -> None:
    alert_id = raise_one(store)
    other = raise_one(store, summary="Another")
    with store.begin() as conn:
        # As the escalation sweep writes it (workflow/alert_escalation.py).
        audit.append(
            conn,
            actor="schoolgate",
            action=alert_cases.ESCALATE,
            subject=f"alert:{alert_id}",
            detail={"level": 1, "to": ["deputy"], "unacknowledged_minutes": 15, "emailed": True},
            at=T0 + timedelta(minutes=15),
        )
    alert_cases.acknowledge(store, DEPUTY, other, T0)
    alert_cases.acknowledge(store, DEPUTY, alert_id, T0 + timedelta(minutes=16))
    steps = alert_cases.history(store, alert_id)
    assert [(s.action, s.actor) for s in steps] == [
        ("alert.escalated", "schoolgate"),
        ("alert.acknowledge", "deputy"),
    ]
    assert steps[0].detail["to"] == ["deputy"]


def test_a_look_at_a_timeline_is_audited(store: Store) -> None:
    alert_id = raise_one(store)
    alert_cases.record_look(
        store, DSL, alert_id, whom="user:pupil7", start=T0, end=T0 + timedelta(hours=2), now=T0
    )
    (record,) = trail(store)
    assert (record.actor, record.action, record.subject, record.address) == (
        "dsl",
        "person.viewed",
        "user:pupil7",
        "10.20.0.5",
    )
    assert record.detail["reason"] == f"alert {alert_id}"
    assert record.detail["alert"] == alert_id


# -- the console's reads -------------------------------------------------------------------


def test_the_list_shows_only_the_readers_audiences_newest_first(store: Store) -> None:
    pupil = raise_one(store)
    tech = raise_one(
        store,
        kind="circumvention",
        severity=3,
        audience=Audience.TECHNICAL,
        fields={"device_ref": "device-abc", "site": "vpn.example"},
        summary="Circumvention attempt blocked: VPN",
    )
    staff = raise_one(store, stored_audience="staff", summary="About a teacher")
    ids = lambda audiences: [  # noqa: E731
        r.id for r in alert_queries.listed(store, audiences, Filters())
    ]
    assert ids(SAFEGUARDING) == [pupil]
    assert ids(frozenset({"technical"})) == [tech]
    assert ids(frozenset({"staff"})) == [staff]
    assert ids(frozenset({"safeguarding", "technical", "staff"})) == [staff, tech, pupil]
    assert ids(frozenset()) == []
    assert alert_queries.one(store, frozenset({"technical"}), pupil) is None
    assert alert_queries.one(store, SAFEGUARDING, pupil) is not None
    # A technical alert names nobody: its row has no user and it has no timeline.
    tech_row = alert_queries.one(store, frozenset({"technical"}), tech)
    assert tech_row.username is None
    assert alert_queries.timeline(store, tech_row) is None


def test_filters(store: Store) -> None:
    low = raise_one(
        store,
        severity=2,
        fields={"user": "pupil2", "category": "Gambling"},
        at=T0 - timedelta(days=2),
        summary="Gambling",
    )
    high = raise_one(store, severity=5, at=T0, summary="Self-harm")
    by_ip = raise_one(
        store,
        kind="high_risk_block",
        severity=3,
        fields={"user": "not signed in", "device": "10.10.9.9", "category": "Gambling"},
        summary="Unsigned",
    )
    alert_cases.close(store, DSL, high, expected="new", outcome="no_concern", notes="", now=T0)

    def ids(**given: Any) -> list[int]:
        return [r.id for r in alert_queries.listed(store, SAFEGUARDING, Filters(**given))]

    assert ids() == [by_ip, low]  # closed ones are left out unless asked for
    assert ids(state="all") == [by_ip, high, low]
    assert ids(state="closed") == [high]
    assert ids(state="all", min_severity=3) == [by_ip, high]
    assert ids(state="all", category="Gambling") == [by_ip, low]
    assert ids(state="all", kind="high_risk_block") == [by_ip]
    assert ids(state="all", person="PUPIL2") == [low]
    assert ids(state="all", person="10.10.9.9") == [by_ip]
    assert ids(state="all", start=T0 - timedelta(days=1)) == [by_ip, high]
    assert ids(state="all", end=T0 - timedelta(days=1)) == [low]
    assert alert_queries.listed(store, SAFEGUARDING, Filters(state="all"), after=high) == [
        row_of(store, by_ip)
    ]
    categories, kinds = alert_queries.choices(store, SAFEGUARDING)
    assert categories == ["Gambling", "Self-harm"]
    assert kinds == ["high_risk_block", "risk_phrase"]


def test_changed_finds_rows_shown_that_moved_since(store: Store) -> None:
    repeated = raise_one(store, key="k1")
    taken = raise_one(store, summary="Taken")
    quiet = raise_one(store, summary="Quiet")
    newer = raise_one(store, summary="Newer", at=T0 + timedelta(minutes=9))
    since = T0 + timedelta(minutes=5)
    raise_one(store, key="k1", at=T0 + timedelta(minutes=6))  # folded into `repeated`
    alert_cases.close(store, DSL, taken, expected="new", outcome="no_concern", notes="", now=since)
    moved = alert_queries.changed(store, SAFEGUARDING, Filters(), since=since, upto=quiet)
    assert [r.id for r in moved] == [taken, repeated]  # not `newer`: beyond what is shown
    assert newer > quiet
    none = alert_queries.changed(
        store, SAFEGUARDING, Filters(), since=since + timedelta(minutes=3), upto=newer
    )
    assert [r.id for r in none] == [newer]  # only its own raising is that recent


def log_line(at: datetime, **values: Any) -> dict[str, Any]:
    row = {
        "at": at,
        "username": "pupil7",
        "profile": "ks2",
        "ip": "10.10.3.7",
        "host": "www.bing.com",
        "url": "https://www.bing.com/search",
        "decision": "allow",
        "reason": "default",
        "stage": "request",
        "check_visit": False,
        # Every row names every column: an insert of many rows takes the first one's keys.
        "search_term": None,
        "category": None,
        "reference": None,
    }
    row.update(values)
    return row


def test_the_timeline_is_the_persons_log_an_hour_either_side(store: Store) -> None:
    alert_id = raise_one(store)
    with store.begin() as conn:
        conn.execute(
            access_log.insert(),
            [
                log_line(T0 - timedelta(minutes=61)),  # too early
                log_line(T0 - timedelta(minutes=30), search_term="sad songs"),
                log_line(T0 - timedelta(minutes=10), username="pupil8"),  # someone else
                log_line(
                    T0,
                    host="hurt.example",
                    url="https://hurt.example/page",
                    decision="block",
                    reason="category",
                    category="self_harm",
                    reference="SG-AAAA-BBBB",
                ),
                log_line(
                    T0 + timedelta(minutes=5),
                    host="bad.example",
                    url="https://bad.example/x",
                    decision="block",
                    reason="illegal",
                ),
                log_line(T0 + timedelta(minutes=20), check_visit=True, host="canary.example"),
                log_line(T0 + timedelta(minutes=61)),  # too late
            ],
        )
    row = row_of(store, alert_id)
    found = alert_queries.timeline(store, row)
    assert found is not None
    assert found.subject.audit_key == "user:pupil7"
    assert (found.start, found.end) == (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert [v.at for v in found.visits] == [
        T0 - timedelta(minutes=30),
        T0,
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=20),
    ]
    search, block, illegal, check = found.visits
    assert search.search_term == "sad songs" and not search.blocked
    assert block.blocked and block.reference == "SG-AAAA-BBBB" and block.category == "self_harm"
    # An illegal-tier block shows no address, as its alert shows none.
    assert (illegal.host, illegal.address) == ("illegal-tier list entry", "")
    assert check.check_visit and not found.more


def test_with_nobody_signed_in_the_timeline_follows_the_address(store: Store) -> None:
    alert_id = raise_one(
        store, fields={"user": "not signed in", "device": "10.10.9.9", "category": "Gambling"}
    )
    with store.begin() as conn:
        conn.execute(
            access_log.insert(),
            [log_line(T0, username=None, ip="10.10.9.9"), log_line(T0, ip="10.10.3.7")],
        )
    found = alert_queries.timeline(store, row_of(store, alert_id))
    assert found is not None and found.subject.audit_key == "device:10.10.9.9"
    assert [v.ip for v in found.visits] == ["10.10.9.9"]


def test_audit_actions_fit_the_trail(store: Store) -> None:
    # The trail refuses actions over 40 characters; ours must fit.
    for action in (alert_cases.ACKNOWLEDGE, alert_cases.CLOSE, alert_cases.REOPEN):
        assert len(action) <= audit_log.c.action.type.length
