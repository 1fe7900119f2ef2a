"""The DSL in a real headless Chromium: opens an incident from an alert's page, adds a follow-up
action, downloads the incident as CSV and JSON (the files' contents checked), then looks
at the pupil's history with a reason, and the audit trail holds the look. The screenshots
are the docs' (docs/screenshots/console-incident*.png, console-people.png)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from proxy_addons.workflow import audit, history_views, incident_export, incident_log
from tests.support.screenshots import shot
from tests.web.test_people import NOW, add_alert, add_visits, visit
from tests.web.test_webapp import PASSWORD, Web
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS, served  # noqa: F401

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")


def seed_history(web: Web) -> None:
    """The pupil's morning: a lesson page, a worrying search, a block, a termly check's visit."""
    add_visits(
        web,
        [
            visit(NOW - timedelta(minutes=20), "pupil", url="https://www.bbc.co.uk/bitesize"),
            visit(
                NOW - timedelta(minutes=12),
                "pupil",
                url="https://www.google.com/search?q=how+to+make+someone+sad",
            ),
            visit(
                NOW - timedelta(minutes=11),
                "pupil",
                action="block",
                reason="category",
                category="adult",
                reference="SG-7KQ2-M4XD",
                url="https://adult.example.test/",
            ),
            visit(NOW - timedelta(minutes=2), "pupil", check_visit=True, category="adult"),
        ],
    )


def test_the_dsl_opens_an_incident_from_an_alert_and_looks_at_the_pupil(
    served: tuple[Web, str],  # noqa: F811
) -> None:
    web, base = served
    seed_history(web)
    alert_id = add_alert(web, "pupil")
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": 1200, "height": 900}, accept_downloads=True, locale="en-GB"
            )
            page.set_default_timeout(15_000)
            page.goto(f"{base}/alerts/{alert_id}")
            page.get_by_label("User name").fill("dsl")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Open an incident from this alert").click()

            # The form comes prefilled from the alert: when, what kind, who, what.
            expect(page.get_by_role("heading", level=1)).to_have_text("Record an incident")
            expect(page.get_by_text(f"From alert {alert_id}")).to_be_visible()
            expect(page.get_by_label("People involved")).to_have_value("pupil")
            expect(page.get_by_label("Kind of incident")).to_have_value("adult")
            page.get_by_label("Where it happened").fill("Year 6 classroom, laptop 12")
            page.get_by_label("What happened").fill(
                "Searched for how to make someone sad, then tried an adult site (blocked)."
            )
            page.get_by_label("Action taken").fill("Spoke to the pupil with the class teacher.")
            page.screenshot(path=str(shot("console-incident-new.png")), full_page=True)
            page.get_by_role("button", name="Save the incident").click()
            expect(page.get_by_role("heading", level=1)).to_contain_text("Incident")
            expect(page.get_by_text("The alert is closed")).to_be_visible()
            incident_id = int(page.url.rsplit("/", 1)[-1])

            # A follow-up action, with whose it is and by when.
            page.get_by_label("What needs doing").fill("Meet the parents")
            page.get_by_label("Who will do it").fill("Mrs Patel (DSL)")
            page.get_by_label("By when").fill("2026-12-18")
            page.get_by_role("button", name="Add the action").click()
            expect(
                page.get_by_role("cell", name=re.compile("^Meet the parents added by dsl"))
            ).to_be_visible()
            page.screenshot(path=str(shot("console-incident.png")), full_page=True)

            # Downloads: the incident as CSV (for the record system) and as JSON.
            with page.expect_download() as got:
                page.get_by_role("button", name="Download as CSV").click()
            rows = list(csv.reader(io.StringIO(Path(got.value.path()).read_text("utf-8"))))
            assert tuple(rows[0]) == incident_export.CSV_COLUMNS
            row = dict(zip(rows[0], rows[1], strict=True))
            assert (row["incident_id"], row["people"], row["alert_id"]) == (
                str(incident_id),
                "pupil",
                str(alert_id),
            )
            assert (
                "Meet the parents; owner Mrs Patel (DSL); due 2026-12-18"
                in row["follow_up_actions"]
            )
            with page.expect_download() as got:
                page.get_by_role("button", name="Download as JSON").click()
            body = json.loads(Path(got.value.path()).read_text("utf-8"))
            assert body["incidents"][0]["location"] == "Year 6 classroom, laptop 12"

            page.get_by_role("link", name="Back to the incident log").click()
            expect(page.get_by_role("link", name=f"Incident {incident_id}")).to_be_visible()
            page.screenshot(path=str(shot("console-incidents.png")), full_page=True)

            # The pupil's history, with the reason for looking.
            page.get_by_role("link", name="People", exact=True).click()
            page.get_by_label("Pupil's user name").fill("pupil")
            page.get_by_label("Why are you looking?").fill(f"alert {alert_id}")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_role("heading", name="History of pupil")).to_be_visible()
            expect(page.locator("tr.visit")).to_have_count(4)
            expect(page.locator("tr.check-visit")).to_have_count(1)
            expect(page.get_by_role("link", name=f"Incident {incident_id}")).to_be_visible()
            page.screenshot(path=str(shot("console-people.png")), full_page=True)
        finally:
            browser.close()

    found = incident_log.get(web.store, incident_id)
    assert found is not None and found.alert_id == alert_id and len(found.actions) == 1
    # The People page's look (the alert page's timeline is audited as a look of its own).
    [look] = [
        r
        for r in audit.records(web.store)
        if r.action == history_views.VIEWED and r.detail.get("where") == "people"
    ]
    assert (look.actor, look.subject, look.detail["reason"]) == (
        "dsl",
        "user:pupil",
        f"alert {alert_id}",
    )
