"""People: a pupil's or device's history through Flask's test client on a real store. Only
the DSL's team may look, a look needs a reason, every page and export is audited, the CSV
can't run formulas, and check visits are marked."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from proxy_addons.alerts import alert_rows
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.record import access_records
from proxy_addons.store.schema import access_log
from proxy_addons.workflow import audit, history_views
from tests.web.test_webapp import Web, make_web, page_token, seeded_db, sign_in  # noqa: F401

NOW = datetime.now(UTC).replace(microsecond=0)


def visit(
    at: datetime, user: str | None, check_visit: bool = False, **fields: Any
) -> dict[str, Any]:
    decision = {"host": "www.example.test", "profile": "ks2", "user": user, "ip": "10.30.0.7"}
    decision.update(fields)
    row = access_records.build(decision, at, method="GET").to_row()
    row["check_visit"] = check_visit
    return row


def add_visits(web: Web, rows: list[dict[str, Any]]) -> None:
    with web.store.begin() as conn:
        conn.execute(access_log.insert(), rows)


def add_alert(web: Web, user: str, audience: str = "safeguarding") -> int:
    event = Event(
        kind="risk_phrase",
        severity=5,
        audience=Audience.SAFEGUARDING,
        summary=f"Risk phrase in a search ({audience})",
        fields={"user": user, "ip": "10.30.0.7", "category": "adult"},
        fold_key=f"risk|{user}|{audience}",
        at=NOW,
    )
    with web.store.begin() as conn:
        return alert_rows.record(conn, event, [], timedelta(0), NOW, audience=audience)


@pytest.fixture
def web(tmp_path: Path, seeded_db: Path) -> Iterator[Web]:  # noqa: F811
    result = make_web(tmp_path / "var", seeded_db)
    add_visits(
        result,
        [
            visit(NOW - timedelta(minutes=5), "pupil", url="https://www.example.test/search?q=x"),
            visit(
                NOW - timedelta(minutes=4),
                "pupil",
                action="block",
                reason="category",
                category="adult",
                reference="SG-ABCD-EFGH",
                url="https://bad.example.test/",
            ),
            visit(NOW - timedelta(minutes=3), "pupil", check_visit=True, category="adult"),
            visit(NOW - timedelta(minutes=2), "pupil2", url="https://www.example.test/=cmd|calc"),
            visit(NOW - timedelta(days=400), "pupil"),
        ],
    )
    yield result
    result.store.dispose()


def look(client: FlaskClient, **fields: str) -> Any:
    data = {"do": "search", **fields, "csrf_token": page_token(client, "/people")}
    return client.post("/people", data=data)


def looks(web: Web) -> list[audit.AuditRecord]:
    return [
        r
        for r in audit.records(web.store)
        if r.action in (history_views.VIEWED, history_views.EXPORTED)
    ]


def test_only_the_dsls_team_may_look(web: Web) -> None:
    for name in ("teacher", "tech"):
        answer = sign_in(web, name).get("/people")
        assert answer.status_code == 403
        assert "DSL and deputies only" in answer.get_data(as_text=True)
    assert web.client().get("/people").status_code == 302  # signed out: to sign in
    assert sign_in(web, "deputy").get("/people").status_code == 200


def test_a_look_needs_someone_and_a_reason_and_keeps_what_was_typed(web: Web) -> None:
    client = sign_in(web, "dsl")
    answer = look(client, user="pupil", start="03/03/2026", reason="")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Say why you are looking" in html
    assert "The first day is not a date" in html
    assert 'value="pupil"' in html  # kept as typed
    answer = look(client, reason="concern raised by class teacher")
    assert "Name a pupil, a device or a block" in answer.get_data(as_text=True)
    assert looks(web) == []  # nothing was read, so nothing to audit


def test_a_pupils_history_is_listed_newest_first_and_the_look_audited(web: Web) -> None:
    client = sign_in(web, "dsl")
    add_alert(web, "pupil")
    add_alert(web, "pupil", audience="staff")  # the headteacher's: the DSL does not see it
    answer = look(client, user="Pupil", reason="alert 12", category="", term="Whole year")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200, html
    assert "3 visits" in html  # the 400-day-old one is outside the term
    assert html.count('<tr class="visit') == 3
    assert html.count('<tr class="visit check-visit">') == 1
    order = [html.index("check</span>"), html.index("bad.example.test")]
    assert order == sorted(order)  # newest first: the check visit (3 min ago) comes first
    assert "Risk phrase in a search (safeguarding)" in html
    assert "(staff)" not in html
    [record] = looks(web)
    assert (record.actor, record.action, record.subject) == ("dsl", "person.viewed", "user:pupil")
    assert record.detail["reason"] == "alert 12"
    assert record.detail["filters"] == {"user": "pupil", "term": "Whole year"}
    assert record.address == "127.0.0.1"


def test_by_reference_device_and_category(web: Web) -> None:
    client = sign_in(web, "dsl")
    html = look(client, reference=" sg-abcd-efgh", reason="pupil quoted it").get_data(as_text=True)
    assert "1 visit," in html and "bad.example.test" in html
    html = look(client, device="10.30.0.7", category="adult", reason="x").get_data(as_text=True)
    assert "2 visits" in html  # the block and the check visit, both in "adult"
    subjects = [r.subject for r in looks(web)]
    assert subjects == ["reference:SG-ABCD-EFGH", "device:10.30.0.7"]


def test_the_csv_export_is_audited_and_formula_safe(web: Web) -> None:
    client = sign_in(web, "dsl")
    answer = look(client, do="csv", user="pupil2", reason="concern from class teacher")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert tuple(rows[0]) == history_views.CSV_COLUMNS
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["url"] == "https://www.example.test/=cmd|calc"  # not at the cell's start
    assert (row["user"], row["check_visit"]) == ("pupil2", "no")
    [record] = looks(web)
    assert (record.action, record.subject, record.detail["rows"]) == (
        "person.exported",
        "user:pupil2",
        1,
    )


def test_a_search_term_that_looks_like_a_formula_is_quoted(web: Web) -> None:
    add_visits(web, [visit(NOW, "pupil3", url="https://www.google.com/search?q=%3DSUM(A1)")])
    client = sign_in(web, "dsl")
    body = look(client, do="csv", user="pupil3", reason="check").get_data(as_text=True)
    row = dict(zip(*list(csv.reader(io.StringIO(body)))[:2], strict=True))
    assert row["search_term"] == "'=SUM(A1)"


def test_results_come_fifty_to_a_page_and_each_page_is_a_look(web: Web) -> None:
    add_visits(web, [visit(NOW - timedelta(hours=1, seconds=s), "pupil4") for s in range(60)])
    client = sign_in(web, "dsl")
    first = look(client, user="pupil4", reason="alert 3").get_data(as_text=True)
    assert "60 visits" in first and "page 1 of 2" in first
    assert first.count('<tr class="visit') == history_views.PAGE_SIZE
    assert "Older visits (page 2)" in first
    second = look(client, user="pupil4", reason="alert 3", page="2").get_data(as_text=True)
    assert second.count('<tr class="visit') == 10
    assert "Newer visits (page 1)" in second
    assert [r.detail["page"] for r in looks(web)] == [1, 2]
