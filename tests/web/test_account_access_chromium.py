"""Two-factor sign-in and the access review in a real headless Chromium: the DSL, whose role
the policy names, is taken to set it up, reads the key off the page, confirms a code, sees
her recovery codes; signs in again with password and code; the IT provider opens the access
review and prints it. Screenshots: docs/screenshots/two-factor-setup.png,
two-factor-recovery-codes.png, two-factor.png (the code asked for at sign-in),
access-review.png and access-review-print.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.workflow import totp
from proxy_addons.workflow.accounts import get_account
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_account_access import Clocked, site  # noqa: F401  (a fixture)
from tests.web.test_webapp import PASSWORD, seeded_db  # noqa: F401  (a fixture)
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")


@pytest.fixture
def served(site: Clocked) -> Iterator[tuple[Clocked, str]]:  # noqa: F811
    running = serve(site.client().application)
    yield site, running.url
    running.stop()


def test_the_dsl_sets_up_two_factor_and_signs_in_with_a_code(
    served: tuple[Clocked, str], tmp_path: Path
) -> None:
    web, base = served
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.set_default_timeout(15_000)

            def password(name: str) -> None:
                page.goto(f"{base}/alerts")
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()

            password("dsl")
            expect(page).to_have_url(f"{base}/account/two-factor")
            expect(page.get_by_text("policy asks people in your role")).to_be_visible()
            secret = page.locator("#secret").inner_text().replace(" ", "")
            assert re.fullmatch(r"[A-Z2-7]{32}", secret)
            page.screenshot(path=str(shot("two-factor-setup.png")), full_page=True)
            page.get_by_label("Code from the app").fill(
                totp.code_at(secret, totp.step_of(web.now.timestamp()))
            )
            page.get_by_role("button", name="Turn on two-factor sign-in").click()
            expect(page.get_by_text("Two-factor sign-in is now on.")).to_be_visible()
            expect(page.locator("ol.codes li")).to_have_count(10)
            page.screenshot(path=str(shot("two-factor-recovery-codes.png")), full_page=True)
            page.get_by_role("link", name="I have kept them: continue").click()
            expect(page.get_by_role("link", name="Alerts")).to_be_visible()
            page.get_by_role("button", name="Sign out").click()

            # A minute later, the next sign-in: password, then the app's code.
            web.later(60)
            password("dsl")
            expect(page).to_have_url(f"{base}/login/code")
            page.get_by_label("Code").fill("123456")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("That code isn't right")
            page.screenshot(path=str(shot("two-factor.png")), full_page=True)
            page.get_by_label("Code").fill(totp.code_at(secret, totp.step_of(web.now.timestamp())))
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/alerts")
            expect(page.get_by_text("Signed in as dsl")).to_be_visible()
            page.get_by_role("button", name="Sign out").click()

            # The IT provider (the test's policy requires two-factor for IT too: set up
            # first) opens the access review.
            password("tech")
            expect(page).to_have_url(f"{base}/account/two-factor")
            tech_secret = page.locator("#secret").inner_text().replace(" ", "")
            page.get_by_label("Code from the app").fill(
                totp.code_at(tech_secret, totp.step_of(web.now.timestamp()))
            )
            page.get_by_role("button", name="Turn on two-factor sign-in").click()
            page.get_by_role("link", name="I have kept them: continue").click()
            page.get_by_role("link", name="Access review").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Access review")
            dsl_row = page.locator("tr", has_text="dsl@test.example")
            expect(dsl_row).to_contain_text("on")
            expect(page.locator("tr", has_text="teacher2@test.example")).to_contain_text("never")
            page.screenshot(path=str(shot("access-review.png")), full_page=True)
            page.emulate_media(media="print")
            expect(page.locator("nav.bar")).to_be_hidden()
            page.screenshot(path=str(shot("access-review-print.png")), full_page=True)
        finally:
            browser.close()
    dsl = get_account(web.store, "dsl")
    assert dsl is not None and dsl.two_factor and dsl.last_sign_in_at == web.now
