"""A report from a user, on SQLite and PostgreSQL: filed with its audience, alerted through
the one alert path, picked up and closed with an outcome, each step audited, and its alert
taking the same step."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import ACKNOWLEDGED, CLOSED, NEW
from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Audience, Pseudonymiser
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts, reports
from proxy_addons.workflow import alert_cases, audit, user_reports
from proxy_addons.workflow.unblocks import Actor
from proxy_addons.workflow.user_reports import NewReport, ReportError
from tests.pg import db_url  # noqa: F401  (a fixture)

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "school.yaml"
T0 = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
DSL = Actor("mrs.patel", "10.99.0.5")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def upsetting(**changes: str | None) -> NewReport:
    values: dict[str, str | None] = {
        "kind": "page_report",
        "reason": "upsetting",
        "reference": "",
        "url": "https://forum.example/thread/9",
        "text": "there were pictures of people hurting themselves",
        "username": "pupil7",
        "ip": "10.10.3.7",
        "device_id": "dev-42",
        "profile": "ks2",
    }
    values.update(changes)
    return NewReport(**values)  # type: ignore[arg-type]


def filed_with_alert(store: Store, policy: Policy, report: NewReport) -> int:
    """As the portal files one: the report, its alert through raise_alert, the link."""
    report_id = user_reports.file(store, report, T0)
    event = user_reports.report_event(report_id, report, policy, Pseudonymiser(b"k" * 32), T0)
    raise_alert(AlertOutbox(store, clock=lambda: T0), policy, event)
    with store.connect() as conn:
        alert_id = conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar_one()
    user_reports.link_alert(store, report_id, alert_id)
    return report_id


def row(store: Store, table: sa.Table, ident: int) -> sa.Row:  # type: ignore[type-arg]
    with store.connect() as conn:
        found = conn.execute(sa.select(table).where(table.c.id == ident)).first()
    assert found is not None
    return found


def test_what_the_reporter_chose_decides_who_is_told() -> None:
    assert {k: (r.audience, r.severity) for k, r in user_reports.REASONS.items()} == {
        "mistake": ("technical", 2),
        "upsetting": ("safeguarding", 4),
        "should_block": ("technical", 3),
    }


def test_a_report_is_kept_new_with_its_audience_and_its_alert(store: Store, policy: Policy) -> None:
    report_id = filed_with_alert(store, policy, upsetting())
    r = row(store, reports, report_id)
    assert (r.state, r.audience, r.reason, r.device_id, r.kind) == (
        "new",
        "safeguarding",
        "upsetting",
        "dev-42",
        "page_report",
    )
    a = row(store, alerts, r.alert_id)
    assert (a.kind, a.severity, a.audience, a.state) == ("user_report", 4, "safeguarding", NEW)
    fields = a.event["fields"]
    assert fields["reporter"] == "pupil7" and fields["reporter_device"] == "10.10.3.7"
    # The alert is about the page: not listed as about the reporter, no timeline of theirs.
    assert (a.username, a.ip, a.device_id) == (None, None, None)
    assert fields["message"] == "there were pictures of people hurting themselves"
    assert "user" not in fields  # the alert is about the page, not about the reporter


def test_the_it_providers_alert_names_nobody(store: Store, policy: Policy) -> None:
    report = upsetting(reason="mistake", kind="report", reference="SG-BCDF-GHJK")
    report_id = filed_with_alert(store, policy, report)
    a = row(store, alerts, row(store, reports, report_id).alert_id)
    assert (a.audience, a.severity, a.username, a.ip) == ("technical", 2, None, None)
    fields = a.event["fields"]
    assert fields["user_ref"].startswith("u-") and fields["device_ref"].startswith("d-")
    assert "pupil7" not in str(a.event) and "10.10.3.7" not in str(a.event)
    assert fields["reference"] == "SG-BCDF-GHJK" and fields["profile"] == "ks2"


def test_closing_a_report_leaves_an_alert_someone_closed_first(
    store: Store, policy: Policy
) -> None:
    report_id = filed_with_alert(store, policy, upsetting())
    alert_id = row(store, reports, report_id).alert_id
    head = Actor("head", "10.99.0.6")
    alert_cases.close(store, head, alert_id, expected=NEW, outcome="referred", notes="LADO", now=T0)
    user_reports.close(store, report_id, DSL, "spoke_to_pupil", "Talked with pupil7.", T0)
    assert row(store, reports, report_id).state == CLOSED
    a = row(store, alerts, alert_id)
    assert (a.outcome, a.closed_by, a.notes) == ("referred", "head", "LADO")


def test_one_reporters_reports_fold_into_one_alert_others_do_not(
    store: Store, policy: Policy
) -> None:
    """A pupil sending twenty "it upset me" reports makes one alert counting them (each
    report is still kept and listed), not twenty that each escalate."""
    first = filed_with_alert(store, policy, upsetting())
    second = filed_with_alert(store, policy, upsetting())
    other = filed_with_alert(store, policy, upsetting(username="pupil8", ip="10.10.3.8"))
    shared = row(store, reports, first).alert_id
    assert row(store, reports, second).alert_id == shared
    assert row(store, reports, other).alert_id != shared
    assert row(store, alerts, shared).occurrences == 2


def test_picked_up_then_closed_with_an_outcome_each_step_audited(
    store: Store, policy: Policy
) -> None:
    report_id = filed_with_alert(store, policy, upsetting())
    user_reports.acknowledge(store, report_id, DSL, T0 + timedelta(minutes=3))
    r = row(store, reports, report_id)
    assert (r.state, r.handled_by) == (ACKNOWLEDGED, "mrs.patel")
    a = row(store, alerts, r.alert_id)
    assert (a.state, a.acknowledged_by) == (ACKNOWLEDGED, "mrs.patel")  # not chased now
    with pytest.raises(ReportError, match="already being looked at"):
        user_reports.acknowledge(store, report_id, DSL, T0)

    with pytest.raises(ReportError, match="notes"):
        user_reports.close(store, report_id, DSL, "spoke_to_pupil", " ", T0)
    with pytest.raises(ReportError, match="Choose"):
        user_reports.close(store, report_id, DSL, "shrug", "n", T0)
    later = T0 + timedelta(minutes=20)
    user_reports.close(store, report_id, DSL, "spoke_to_pupil", "Talked with pupil7.", later)
    r = row(store, reports, report_id)
    assert (r.state, r.outcome, r.notes) == (CLOSED, "spoke_to_pupil", "Talked with pupil7.")
    a = row(store, alerts, r.alert_id)
    assert (a.state, a.outcome, a.closed_by) == (CLOSED, "spoke_to_pupil", "mrs.patel")
    # The alert took each step through alert_cases: its own history shows them.
    on_alert = [(s.action, s.actor) for s in alert_cases.history(store, r.alert_id)]
    assert on_alert == [(alert_cases.ACKNOWLEDGE, "mrs.patel"), (alert_cases.CLOSE, "mrs.patel")]
    with pytest.raises(ReportError, match="closed already"):
        user_reports.close(store, report_id, DSL, "no_action", "", later)

    steps = user_reports.history(store, report_id)
    assert [(s.action, s.actor, s.address) for s in steps] == [
        ("report.acknowledged", "mrs.patel", "10.99.0.5"),
        ("report.closed", "mrs.patel", "10.99.0.5"),
    ]
    assert steps[1].detail["outcome"] == "spoke_to_pupil"
    # The notes name a pupil: kept with the report, never in the trail (kept for ever).
    assert "pupil7" not in str([s.detail for s in steps])
    assert audit.verify(store).ok


def test_the_console_lists_a_persons_audiences_newest_first_open_by_default(
    store: Store, policy: Policy
) -> None:
    safe = filed_with_alert(store, policy, upsetting())
    tech = filed_with_alert(store, policy, upsetting(reason="should_block"))
    with store.begin() as conn:  # a report kept before reports had an audience: IT's
        conn.execute(
            reports.insert().values(
                kind="report", at=T0, reference="", url="u", text="", profile="ks2"
            )
        )
    user_reports.close(store, safe, DSL, "no_action", "", T0)

    def ids(audiences: set[str], state: str | None) -> list[int]:
        return [r.id for r in user_reports.list_reports(store, audiences, state)]

    assert ids({"safeguarding"}, "open") == []
    assert ids({"safeguarding"}, None) == [safe]
    assert ids({"technical"}, "open") == [tech + 1, tech]
    assert ids({"technical", "safeguarding"}, "closed") == [safe]


def test_a_flood_is_counted_per_reporter(store: Store) -> None:
    for _ in range(3):
        user_reports.file(store, upsetting(), T0)
    user_reports.file(store, upsetting(username=None, ip="10.10.9.9"), T0)
    since = T0 - timedelta(hours=1)
    assert user_reports.sent_since(store, "pupil7", "10.10.3.7", since) == 3
    assert user_reports.sent_since(store, None, "10.10.9.9", since) == 1
    assert user_reports.sent_since(store, "pupil7", None, T0 + timedelta(seconds=1)) == 0


def test_audience_values_match_the_alerts() -> None:
    assert user_reports.SAFEGUARDING == Audience.SAFEGUARDING.value
