"""The governance pages through Flask's test client: the termly report and the annual reviews,
who may read and who may record, the audit record, and the reminder when a review is due."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alerts, audit_log
from proxy_addons.workflow import audit, reviews
from proxy_addons.workflow.accounts import add_account
from tests.web.test_webapp import PASSWORD, Web, make_web, page_token, seed, sign_in, text

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def seed_governance(var: Path) -> Path:
    """The web tests' accounts, a governor and the headteacher."""
    db = seed(var)
    store = Store.open(store_url(var))
    add_account(store, "governor", PASSWORD, ["governor"], email="governor@test.example")
    add_account(store, "head", PASSWORD, ["headteacher"], email="head@test.example")
    store.dispose()
    return db


@pytest.fixture(scope="module")
def governance_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_governance(tmp_path_factory.mktemp("governance-seed"))


@pytest.fixture
def web(tmp_path: Path, governance_db: Path) -> Iterator[Web]:
    made = make_web(tmp_path / "var", governance_db)
    yield made
    made.store.dispose()


def review_form(client, **fields: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    data = {
        "held_on": "2026-11-20",
        "role_0": "slt",
        "name_0": "Mrs Okafor",
        "role_1": "governor",
        "name_1": "Mr Shah",
        "role_2": "it",
        "name_2": "Jo Bell",
        "findings": "Filtering and monitoring fit for purpose.",
        "actions": "Add the new AI tool to the termly check (IT, by half term).",
        "csrf_token": page_token(client, "/reviews/new"),
    }
    return data | fields


def test_a_governor_reads_the_report_and_the_reviews_but_records_nothing(web: Web) -> None:
    client = sign_in(web, "governor")
    report = client.get("/report/term")
    assert report.status_code == 200
    html = text(report)
    assert "Filtering and monitoring: Whole year" in html
    assert '<select id="term" name="term">' in html and "No pupil is named" in html
    assert report.headers["Content-Security-Policy"].startswith("default-src 'none'")
    listing = text(client.get("/reviews"))
    assert "No review has been recorded yet" in listing and "Record a review" not in listing
    assert client.get("/reviews/new").status_code == 403
    assert client.get("/report/term?term=Autumn 1999").status_code == 404
    # The menu offers the governor the report and the reviews, and nothing about people.
    links = re.findall(r'<a href="(/[^"]*)">', listing)
    assert "/report/term" in links and "/reviews" in links
    assert not {"/unblocks", "/devices"} & set(links)


def test_a_new_install_says_when_its_first_review_is_due_as_the_report_does(web: Web) -> None:
    # The gateway began keeping records two days ago: the first review is due a month after
    # that, and the reviews page must not say "due now" while the termly report gives a date.
    began = datetime.now(UTC) - timedelta(days=2)
    with web.store.begin() as conn:
        audit.append(
            conn, actor="it", action="policy.loaded", subject="policy", detail={}, at=began
        )
    due = began.astimezone(web.policy.timezone).date() + timedelta(days=reviews.FIRST_REVIEW_DAYS)
    client = sign_in(web, "governor")
    listing = text(client.get("/reviews"))
    assert "the first is due by" in listing and "due now" not in listing
    assert f"{due.day} {due:%b %Y}" in listing
    report = text(client.get("/report/term"))
    assert f"{due.day} {due:%b %Y}" in report


def test_staff_without_a_governance_role_are_refused(web: Web) -> None:
    client = sign_in(web, "teacher")
    assert client.get("/report/term").status_code == 403
    assert client.get("/reviews").status_code == 403


def test_the_dsl_records_a_review_audited_and_listed_in_the_report(web: Web) -> None:
    client = sign_in(web, "dsl")
    answer = client.post("/reviews/new", data=review_form(client))
    assert answer.status_code == 303 and answer.headers["Location"] == "/reviews"
    listing = text(client.get("/reviews"))
    assert "The review is recorded." in listing
    assert "Mr Shah, Governor" in listing and "Jo Bell, IT provider" in listing
    [found] = reviews.list_reviews(web.store)
    assert found.held_on == date(2026, 11, 20) and found.recorded_by == "dsl"
    with web.store.connect() as conn:
        audited = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "review.record")
        ).one()
    assert audited.actor == "dsl" and audited.subject == f"review {found.id}"
    assert audited.address == "127.0.0.1"
    report = text(client.get("/report/term?term=whole+year"))
    assert "Mrs Okafor (Senior leader (SLT)), Mr Shah (Governor), Jo Bell (IT provider)" in report
    assert "The next review is due by <strong>20 Nov 2027</strong>" in report


def test_the_headteacher_records_too(web: Web) -> None:
    client = sign_in(web, "head")
    assert client.post("/reviews/new", data=review_form(client)).status_code == 303


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"findings": " "}, "Write down what the review found"),
        ({"name_0": "", "name_1": "", "name_2": ""}, "Name at least one person"),
        ({"held_on": "2999-01-01"}, "the date is in the future"),
        ({"held_on": "soon"}, "Give the date the review was held"),
        ({"role_0": "pupil"}, "Choose a role for each person"),
    ],
)
def test_a_review_missing_something_is_refused_and_kept_in_the_form(
    web: Web, fields: dict[str, str], said: str
) -> None:
    client = sign_in(web, "dsl")
    answer = client.post("/reviews/new", data=review_form(client, **fields))
    assert answer.status_code == 400 and said in text(answer)
    assert "Mr Shah" in text(answer) or not fields.get("name_1", "x")
    assert reviews.list_reviews(web.store) == []


def test_the_reminder_goes_once_a_day_while_a_review_is_due(web: Web) -> None:
    policy = web.policy
    assert reviews.remind_if_due(web.store, policy, NOW, deliver=False) is None  # nothing kept
    # With none recorded, the first is due a month after the gateway began keeping records.
    began = NOW - timedelta(days=reviews.FIRST_REVIEW_DAYS - 1)
    with web.store.begin() as conn:
        audit.append(
            conn, actor="it", action="policy.loaded", subject="policy", detail={}, at=began
        )
    assert reviews.remind_if_due(web.store, policy, NOW, deliver=False) is None
    assert reviews.next_due(
        policy, [], NOW.date(), reviews.first_record_day(web.store, policy)
    ) == (began.astimezone(policy.timezone).date() + timedelta(days=reviews.FIRST_REVIEW_DAYS))
    now_due = NOW + timedelta(days=1)
    assert reviews.remind_if_due(web.store, policy, now_due, deliver=False) == now_due.date()
    later = now_due + timedelta(hours=3)
    assert reviews.remind_if_due(web.store, policy, later, deliver=False) is None
    with web.store.connect() as conn:
        raised = conn.execute(sa.select(alerts).where(alerts.c.kind == "review_due")).all()
    assert len(raised) == 1 and raised[0].audience == "safeguarding"
    # Recorded within the year: nothing is due until a year after it.
    reviews.record_review(
        web.store,
        held_on=date(2026, 12, 7),
        participants=[("dsl", "Ms Dee")],
        findings="Fine",
        actions="None",
        actor="dsl",
        address=None,
        now=NOW,
        today=NOW.date(),
    )
    assert reviews.remind_if_due(web.store, policy, NOW + timedelta(days=2)) is None
    late = NOW + timedelta(days=366)
    assert reviews.remind_if_due(web.store, policy, late, deliver=False) == date(2027, 12, 7)


def test_the_next_review_is_due_months_after_the_last() -> None:
    assert reviews.add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert reviews.add_months(date(2026, 11, 20), 12) == date(2027, 11, 20)
