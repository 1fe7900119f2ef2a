"""The governance pages in a real headless Chromium: the DSL records the annual review, a
governor reads the termly report (a term longer than the access log's retention, check
visits left out) on screen and as it prints. Screenshots: docs/screenshots/console-reviews.png,
governors-report.png and governors-report-print.png."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy_addons.core.policy.load import load_policy
from proxy_addons.record import access_store, daily_totals
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.store.schema import alerts, incidents
from proxy_addons.web.app import create_app
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.conftest import ROOT
from tests.record.test_term_report import alert_row, block, incident_row, visit
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_governance import seed_governance
from tests.web.test_webapp import PASSWORD, SECRET
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # the web app's clock: Monday 7 December
TERMS = """  terms:
    - {name: Autumn 2026, start: 2026-09-01, end: 2026-12-18}
    - {name: Spring 2027, start: 2027-01-05, end: 2027-03-26}
"""


def autumn_policy(folder: Path) -> Path:
    """The test policy with the school's real terms: an autumn term of 16 weeks."""
    shutil.copytree(ROOT / "tests/data/policy", folder)
    path = folder / "school.yaml"
    text = path.read_text()
    text = re.sub(r"  terms:\n    - \{name: Whole year[^\n]*\n", TERMS, text)
    path.write_text(text)
    return path


def seed_term(store: Store) -> None:
    """Six weeks of the log (from 26 Oct: totals began then), counted and purged as the
    gateway does; alerts and incidents through the term; the check's canaries."""
    tz = load_policy(ROOT / "tests/data/policy/school.yaml").timezone
    rows = []
    for week in range(6):
        monday = datetime(2026, 10, 26, 9, 0, tzinfo=UTC) + timedelta(weeks=week)
        for n in range(3 + week * 2):
            rows.append(block(monday + timedelta(minutes=n), f"p{n}", "ks2", "social"))
        for n in range(week + 1):
            rows.append(block(monday + timedelta(days=1), f"e{n}", "early_years", "games"))
        rows += [visit(monday + timedelta(hours=n), f"p{n}", "ks2") for n in range(40)]
    rows.append(
        block(datetime(2026, 11, 2, 9, tzinfo=UTC), "check", "ks2", "adult", identified_by="check")
    )
    access_store.write_rows(store, rows)
    daily_totals.total_missing(store, tz, NOW)
    access_store.purge(store, None, 90, NOW + timedelta(days=90), timezone=tz)
    day = datetime(2026, 9, 7, 11, 0, tzinfo=UTC)
    with store.begin() as conn:
        conn.execute(
            alerts.insert(),
            [
                alert_row(day + timedelta(days=d), "risk_phrase", 5, state="closed", outcome=o)
                for d, o in [(3, "spoke_to_pupil"), (15, "no_concern"), (40, "referred")]
            ]
            + [alert_row(day + timedelta(days=70), "risk_phrase", 4)]
            + [
                alert_row(
                    day + timedelta(days=20),
                    "high_risk_block",
                    4,
                    state="closed",
                    outcome="false_positive",
                )
            ]
            + [
                alert_row(
                    day + timedelta(days=50), "device_stale", 2, audience="technical", username=None
                )
            ],
        )
        conn.execute(
            incidents.insert(),
            [incident_row(day + timedelta(days=40), "social_networks", "closed")],
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(seed_governance(tmp_path / "seed"), var / DB_FILE)
    store = Store.open(store_url(var))
    seed_term(store)
    policy = load_policy(autumn_policy(tmp_path / "policy"))
    workflow = UnblockWorkflow(store, lambda: policy, send_in_background=False, clock=lambda: NOW)
    app = create_app(workflow, store, secret_key=SECRET, secure_cookies=False)
    served = serve(app)
    yield served.url
    served.stop()
    store.dispose()


def test_the_dsl_records_a_review_and_a_governor_reads_the_report(served: str) -> None:
    base = served
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(15_000)

            def sign_in(name: str) -> None:
                page.goto(f"{base}/login")
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page).not_to_have_url(re.compile(r"/login"))

            sign_in("dsl")
            page.goto(f"{base}/reviews")
            expect(page.locator("#due")).to_contain_text("No review has been recorded yet")
            page.get_by_role("link", name="Record a review").click()
            page.get_by_label("Date of the review").fill("2026-11-20")
            page.get_by_label("Name").nth(0).fill("Mrs Okafor (deputy head)")
            page.get_by_label("Name").nth(1).fill("Ms Dee")
            page.get_by_label("Name").nth(2).fill("Mr Shah")
            page.get_by_label("Name").nth(3).fill("Jo Bell, Northgate IT")
            page.get_by_label("What the review found").fill(
                "Filtering and monitoring are fit for purpose. The termly check passed in every "
                "group. YouTube restricted mode is enforced for pupils."
            )
            page.get_by_label("Actions agreed").fill(
                "Add the new AI homework tool to the termly check (Jo Bell, by half term).\n"
                "Remind staff how to ask for an unblock (Ms Dee, next INSET day)."
            )
            page.get_by_role("button", name="Record the review").click()
            expect(page.get_by_text("The review is recorded.")).to_be_visible()
            expect(page.locator("#due")).to_contain_text("20 Nov 2027")
            page.screenshot(path=str(shot("console-reviews.png")), full_page=True)
            page.get_by_role("button", name="Sign out").click()

            sign_in("governor")
            page.goto(f"{base}/report/term")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Filtering and monitoring: Autumn 2026"
            )
            coverage = page.locator("#coverage")
            expect(coverage).to_contain_text("kept for 90 days, less than this term (109 days)")
            expect(coverage).to_contain_text("1 Sep to 25 Oct 2026 (55 days)")
            expect(coverage).to_contain_text("the figures run to the end of 6 Dec 2026")
            expect(page.locator("#total-blocks")).to_have_text(str(3 * 6 + 30 + 21))
            expect(page.locator("#check-visits")).to_contain_text("The visit made by the termly")
            expect(page.locator("#blocks")).to_contain_text("Social networks")
            expect(page.locator("#alerts")).to_contain_text("A worrying search or phrase")
            expect(page.locator("#reviews")).to_contain_text("Mr Shah (Governor)")
            assert page.locator("svg rect.col").count() == 2 * 16
            assert page.locator("svg rect.unknown").count() == 8  # 1 Sep to 25 Oct
            page.screenshot(path=str(shot("governors-report.png")), full_page=True)
            page.emulate_media(media="print")
            expect(page.locator("form.bar")).to_be_hidden()
            page.screenshot(path=str(shot("governors-report-print.png")), full_page=True)
            page.emulate_media(media="screen")
            page.get_by_label("Term", exact=True).select_option("Spring 2027")
            page.get_by_role("button", name="Show").click()
            expect(page.locator("#coverage")).to_contain_text("This term has not started yet")
        finally:
            browser.close()
