"""The alerts console in a real headless Chromium: the DSL has the list open, an alert is
raised through alerts/dispatch.raise_alert into the same store and appears without a
reload; the DSL opens it, reads the pupil's timeline, acknowledges it and closes it with an
outcome. The list also works with JavaScript off. Screenshots: docs/screenshots/
console-alerts.png and console-alert.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.store.schema import access_log, alerts
from proxy_addons.workflow import alert_cases, audit
from proxy_addons.workflow.unblocks import Actor
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_alert_pages import seed_console
from tests.web.test_webapp import PASSWORD, Web, make_web
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS
from tests.workflow.test_alert_cases import log_line, raise_one

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Web, str]]:
    web = make_web(tmp_path / "var", seed_console(tmp_path / "seed"), secure_cookies=False)
    served = serve(web.app)
    yield web, served.url
    served.stop()
    web.store.dispose()


def seed_earlier(web: Web, now: datetime) -> int:
    """A morning's alerts, as a DSL would find them, and the pupil's browsing; returns the
    first alert's id."""
    first = raise_one(
        web.store,
        kind="high_risk_block",
        severity=3,
        fields={"user": "pupil2", "site": "bet.example", "category": "Gambling"},
        summary="High-risk site blocked: Gambling",
        at=now - timedelta(hours=2),
    )
    raise_one(
        web.store,
        kind="repeated_blocks",
        severity=3,
        fields={"user": "pupil2", "attempts": "5 blocked in 10 minutes", "sites": "bet.example"},
        summary="Repeated blocked attempts (5 in 10 min)",
        at=now - timedelta(hours=1, minutes=50),
    )
    closed = raise_one(
        web.store,
        severity=4,
        fields={"user": "pupil3", "search": "knife", "category": "Violence"},
        summary="Risk phrase in a search: Violence (severity 4)",
        at=now - timedelta(hours=3),
    )
    alert_cases.close(
        web.store,
        Actor("deputy"),
        closed,
        expected="new",
        outcome="no_concern",
        notes="Cooking lesson.",
        now=now - timedelta(hours=2, minutes=30),
    )
    with web.store.begin() as conn:
        conn.execute(
            access_log.insert(),
            [
                log_line(
                    now - timedelta(minutes=25),
                    host="www.bbc.co.uk",
                    url="https://www.bbc.co.uk/bitesize",
                ),
                log_line(
                    now - timedelta(minutes=12),
                    url="https://www.bing.com/search",
                    search_term="why do i feel sad",
                ),
                log_line(
                    now - timedelta(minutes=1),
                    host="hurt.example",
                    url="https://hurt.example/ways",
                    decision="block",
                    reason="category",
                    category="self_harm",
                    reference="SG-7Q2K-M4XD",
                ),
                log_line(
                    now - timedelta(seconds=30),
                    host="canary.example",
                    url="https://canary.example/adult-test",
                    check_visit=True,
                ),
            ],
        )
    return first


def test_the_dsl_triages_a_live_alert_in_chromium(served: tuple[Web, str]) -> None:
    web, base = served
    expect = sync_api.expect
    expect.set_options(timeout=20_000)  # the feed polls every few seconds; a loaded CI is slow
    now = datetime.now(UTC)
    gambling = seed_earlier(web, now)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            errors: list[str] = []
            # A script error, or a request of the page's that failed (a browser's own
            # favicon.ico aside: the app serves none).
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "response",
                lambda r: (
                    errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )

            page.goto(f"{base}/alerts")
            expect(page).to_have_url(re.compile(r"/login\?next="))
            page.get_by_label("User name").fill("dsl")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/alerts")
            expect(page.get_by_role("heading", name="Alerts", level=1)).to_be_visible()
            expect(page.locator("#alerts tbody tr")).to_have_count(2)  # the closed one hidden
            page.evaluate("window.stillTheSamePage = true")

            # An alert is raised into the same store while the list is open.
            event = Event(
                kind="risk_phrase",
                severity=5,
                audience=Audience.SAFEGUARDING,
                summary="Risk phrase in a search: Self-harm (severity 5)",
                fields={
                    "user": "pupil7",  # no account: a pupil (an account would make them staff)
                    "device": "10.10.3.7",
                    "profile": "ks2",
                    "search": "how to hurt myself",
                    "site": "www.bing.com",
                    "category": "Self-harm",
                    "phrase": "hurt myself",
                },
                fold_key="risk_phrase|pupil7|self_harm|search",
                timezone="Europe/London",
            )
            raise_alert(web.workflow.outbox, web.policy, event)
            with web.store.connect() as conn:
                alert_id = conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar_one()
            row = page.locator(f"#alert-{alert_id}")
            expect(row).to_be_visible()
            expect(row).to_contain_text("5 Urgent")
            expect(row).to_contain_text("pupil7")
            expect(page.locator("#feed-status")).to_contain_text("New alert.")
            expect(page.locator("#alerts tbody tr").first).to_have_id(f"alert-{alert_id}")
            # A deputy closes another alert meanwhile: its row says so, still no reload.
            alert_cases.close(
                web.store,
                Actor("deputy"),
                gambling,
                expected="new",
                outcome="spoke_to_pupil",
                notes="Talked about it in class.",
                now=datetime.now(UTC),
            )
            expect(page.locator(f"#alert-{gambling}")).to_contain_text("Closed")
            assert page.evaluate("window.stillTheSamePage") is True  # no reload
            page.screenshot(path=str(shot("console-alerts.png")), full_page=True)

            # The DSL opens it and reads the pupil's timeline around it.
            row.get_by_role("link").click()
            expect(page).to_have_url(f"{base}/alerts/{alert_id}")
            expect(page.get_by_role("heading", name="Timeline of user pupil7")).to_be_visible()
            timeline = page.locator("table.timeline")
            expect(timeline).to_contain_text("why do i feel sad")
            expect(timeline).to_contain_text("SG-7Q2K-M4XD")
            expect(timeline).to_contain_text("Termly check visit")
            expect(timeline).to_contain_text("The alert was raised here")
            page.screenshot(path=str(shot("console-alert.png")), full_page=True)

            page.get_by_role("button", name="Acknowledge").click()
            expect(page.get_by_text("Acknowledged: the alert is yours")).to_be_visible()
            page.get_by_label("Spoke to the pupil").check()
            page.get_by_role("textbox", name=re.compile("^Notes")).fill(
                "Spoke to them with their teacher; parents called."
            )
            page.get_by_role("button", name="Close the alert").click()
            expect(page.get_by_text("Outcome: Spoke to the pupil")).to_be_visible()
            expect(
                page.get_by_text("Closed by dsl: Spoke to the pupil, with notes")
            ).to_be_visible()
            assert errors == []

            # Without JavaScript the list is the same, only not live.
            quiet = browser.new_context(java_script_enabled=False)
            plain = quiet.new_page()
            plain.goto(f"{base}/alerts?state=all")
            plain.get_by_label("User name").fill("dsl")
            plain.get_by_label("Password").fill(PASSWORD)
            plain.get_by_role("button", name="Sign in").click()
            expect(plain.locator(f"#alert-{alert_id}")).to_contain_text("Closed")
            quiet.close()
        finally:
            browser.close()

    with web.store.connect() as conn:
        row_now = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()
    assert (row_now.state, row_now.outcome, row_now.closed_by) == (
        "closed",
        "spoke_to_pupil",
        "dsl",
    )
    trail = audit.records(web.store)
    assert [r.action for r in trail if r.subject == f"alert:{alert_id}"] == [
        "alert.acknowledge",
        "alert.close",
    ]
    assert any(r.action == "person.viewed" and r.subject == "user:pupil7" for r in trail)
