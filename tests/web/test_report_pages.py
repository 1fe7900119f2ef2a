"""Reports from users in the console, through Flask's test client on a real SQLite store and
in real Chromium: each audience sees its own, the safeguarding team sees who sent one (the
look audited), the IT provider a pseudonym; picked up and closed with an outcome, audited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Pseudonymiser
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.store.schema import alerts, audit_log, reports
from proxy_addons.workflow import user_reports
from proxy_addons.workflow.user_reports import NewReport
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_webapp import PASSWORD, Web, make_web, page_token, seed, sign_in
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS

T0 = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    result = make_web(tmp_path / "var", seed(tmp_path / "seed"))
    yield result
    result.store.dispose()


def file_report(web: Web, reason: str, **changes: str | None) -> int:
    """A report as the portal files it: the row, its alert, the link between them."""
    values: dict[str, str | None] = {
        "kind": "page_report" if reason != "mistake" else "report",
        "reason": reason,
        "reference": "",
        "url": "https://forum.example/thread/9?q=secret",
        "text": "people were being cruel",
        "username": "ellie.k",
        "ip": "10.10.3.7",
        "device_id": None,
        "profile": "ks2",
    }
    values.update(changes)
    report = NewReport(**values)  # type: ignore[arg-type]
    report_id = user_reports.file(web.store, report, T0)
    event = user_reports.report_event(report_id, report, web.policy, Pseudonymiser(b"k" * 32), T0)
    raise_alert(AlertOutbox(web.store, clock=lambda: T0), web.policy, event)
    with web.store.connect() as conn:
        alert_id = conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar_one()
    user_reports.link_alert(web.store, report_id, alert_id)
    return report_id


def report_row(web: Web, report_id: int) -> sa.Row:  # type: ignore[type-arg]
    found = user_reports.get(web.store, report_id)
    assert found is not None
    return found


def audit_actions(web: Web) -> list[tuple[str, str, str]]:
    with web.store.connect() as conn:
        query = sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.subject)
        return [tuple(r) for r in conn.execute(query.order_by(audit_log.c.seq))]


def test_only_the_safeguarding_team_and_it_open_the_reports(web: Web) -> None:
    assert web.client().get("/reports").status_code == 302  # signed out: sign in first
    answer = sign_in(web, "teacher").get("/reports")
    assert answer.status_code == 403 and "safeguarding team" in answer.get_data(as_text=True)
    assert sign_in(web, "dsl").get("/reports").status_code == 200
    assert sign_in(web, "tech").get("/reports").status_code == 200


def test_each_audience_sees_its_own_reports(web: Web) -> None:
    upsetting = file_report(web, "upsetting")
    mistake = file_report(web, "mistake", reference="SG-BCDF-GHJK")
    dsl, tech = sign_in(web, "dsl"), sign_in(web, "tech")
    dsl_list = dsl.get("/reports").get_data(as_text=True)
    assert f"/reports/{upsetting}" in dsl_list and f"/reports/{mistake}" not in dsl_list
    assert "ellie.k" not in dsl_list and "10.10.3.7" not in dsl_list  # no names on the list
    assert "secret" not in dsl_list  # nor the query of the address
    tech_list = tech.get("/reports").get_data(as_text=True)
    assert f"/reports/{mistake}" in tech_list and f"/reports/{upsetting}" not in tech_list
    assert dsl.get(f"/reports/{mistake}").status_code == 404
    assert tech.get(f"/reports/{upsetting}").status_code == 404
    token = page_token(tech, "/reports")
    refused = tech.post(f"/reports/{upsetting}/close", data={"csrf_token": token})
    assert refused.status_code == 404 and report_row(web, upsetting).state == "new"


def test_the_dsl_sees_who_sent_it_and_the_look_is_audited(web: Web) -> None:
    report_id = file_report(web, "upsetting")
    page = sign_in(web, "dsl").get(f"/reports/{report_id}").get_data(as_text=True)
    assert "ellie.k on 10.10.3.7" in page and "people were being cruel" in page
    assert ("dsl", "report.viewed", f"report:{report_id}") in audit_actions(web)


def test_the_it_provider_sees_the_profile_and_a_pseudonym_only(web: Web) -> None:
    report_id = file_report(web, "mistake")
    page = sign_in(web, "tech").get(f"/reports/{report_id}").get_data(as_text=True)
    main = page.split("<main>")[1]
    assert "KS2" in main and re.search(r"u-[0-9a-f]{12}", main)
    assert "10.10.3.7" not in main and "ellie.k" not in main
    assert not any(a[1] == "report.viewed" for a in audit_actions(web))  # nobody named: no look


def test_the_it_provider_never_reads_the_search_in_a_reported_address(web: Web) -> None:
    """A blocked search reported as a mistake: the IT provider sees the site and path (the
    report's page, its alert's page, the alert every message is written from), never what
    the pupil searched for; the DSL sees the whole address on a safeguarding report."""
    searched = "https://www.google.com/search?q=am+i+pregnant+at+13#top"
    mistake = file_report(web, "mistake", url=searched)
    tech = sign_in(web, "tech")
    alert_id = report_row(web, mistake).alert_id
    for path in (f"/reports/{mistake}", f"/alerts/{alert_id}"):
        page = tech.get(path).get_data(as_text=True)
        assert "www.google.com/search" in page and "pregnant" not in page, path
    with web.store.connect() as conn:  # what every channel's message is written from
        event = conn.execute(sa.select(alerts.c.event).where(alerts.c.id == alert_id)).scalar()
    assert event["fields"]["page"] == "https://www.google.com/search"
    upsetting = file_report(web, "upsetting", url=searched)
    assert "pregnant" in sign_in(web, "dsl").get(f"/reports/{upsetting}").get_data(as_text=True)


def test_picked_up_and_closed_with_an_outcome(web: Web) -> None:
    report_id = file_report(web, "upsetting")
    dsl = sign_in(web, "dsl")
    token = page_token(dsl, f"/reports/{report_id}")
    answer = dsl.post(f"/reports/{report_id}/acknowledge", data={"csrf_token": token})
    assert answer.status_code == 303
    assert report_row(web, report_id).state == "acknowledged"
    missing = dsl.post(
        f"/reports/{report_id}/close",
        data={"csrf_token": token, "outcome": "spoke_to_pupil", "notes": ""},
    )
    page = missing.get_data(as_text=True)
    assert missing.status_code == 400 and "Say in the notes" in page
    assert '<option value="spoke_to_pupil" selected>' in page  # what was chosen is kept
    notes = "Talked with the pupil and their class teacher."
    data = {"csrf_token": token, "outcome": "spoke_to_pupil", "notes": notes}
    assert dsl.post(f"/reports/{report_id}/close", data=data).status_code == 303
    row = report_row(web, report_id)
    assert (row.state, row.outcome, row.notes, row.handled_by) == (
        "closed",
        "spoke_to_pupil",
        notes,
        "dsl",
    )
    shown = dsl.get(f"/reports/{report_id}").get_data(as_text=True)
    assert "Spoke to the pupil" in shown and "closed it" in shown
    assert "Close the report" not in shown
    # The report's steps, and its alert's, which alert_cases takes alongside.
    assert [a[1] for a in audit_actions(web) if a[1] != "report.viewed"] == [
        "alert.acknowledge",
        "report.acknowledged",
        "alert.close",
        "report.closed",
    ]
    open_list = dsl.get("/reports").get_data(as_text=True)
    assert f"/reports/{report_id}" not in open_list and "No report is waiting" in open_list
    assert f"/reports/{report_id}" in dsl.get("/reports?state=closed").get_data(as_text=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_a_pupils_report_reaches_the_dsl_and_is_closed_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    web = make_web(tmp_path / "var", seed(tmp_path / "seed"))
    file_report(web, "should_block", url="http://games.example/play", text="games in maths")
    report_id = file_report(web, "upsetting", url="http://plain.example/chat/room-3")
    served = serve(web.app)
    base, expect = served.url, sync_api.expect
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(f"{base}/login?next=/reports")
            page.get_by_label("User name").fill("dsl")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/reports")
            expect(page.get_by_role("link", name="Reports from users")).to_be_visible()
            item = page.get_by_role("link", name=re.compile(f"report {report_id}"))
            expect(item).to_contain_text("plain.example/chat/room-3")
            page.screenshot(path=str(shot("console-reports.png")))
            item.click()
            expect(page.get_by_text("ellie.k on 10.10.3.7")).to_be_visible()
            page.get_by_role("button", name="I'm looking at it").click()
            expect(page.locator("h1 .status")).to_have_text("Being looked at")
            page.get_by_label("What was done").select_option("spoke_to_pupil")
            page.get_by_label("Notes").fill("Talked with the pupil; the chat site is now blocked.")
            page.screenshot(path=str(shot("console-report.png")), full_page=True)
            page.get_by_role("button", name="Close the report").click()
            expect(page.locator("h1 .status")).to_have_text("Closed")
            browser.close()
    finally:
        served.stop()
    row = report_row(web, report_id)
    assert (row.state, row.outcome, row.handled_by) == ("closed", "spoke_to_pupil", "dsl")
    with web.store.connect() as conn:
        state = conn.execute(sa.select(alerts.c.state).where(alerts.c.id == row.alert_id))
        assert state.scalar_one() == "closed"  # its alert is not left to escalate
    with web.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(reports)).scalar_one() == 2
    web.store.dispose()
