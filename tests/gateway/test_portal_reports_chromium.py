"""A pupil reports in real headless Chromium, through a real gateway (mitmdump): from a block
page's "Report a page" link to the portal's form, choosing in their own words, and told who
will read it; a self-harm site's calm page. The screenshots are the docs' (docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from proxy_addons.store.schema import reports
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.checks.test_check_page_chromium import CHROMIUM, spki_hash
from tests.conftest import Gateway
from tests.gateway.test_portal_reports_e2e import ADULT, MONITORED, gateway, rows  # noqa: F401
from tests.support.screenshots import shot
from tests.web.test_webapp_chromium import CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")


@pytest.fixture
def pupil_page(gateway: Gateway) -> Iterator[Any]:  # noqa: F811
    """A Chromium page on the gateway's proxy, with no sign-in: a pupil on a school device."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_hash(gateway.ca)}"],
            proxy={"server": gateway.proxy},
        )
        page = browser.new_page(viewport={"width": 800, "height": 900})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(shot(name)), full_page=True)


def test_a_pupil_reports_an_upsetting_page_from_a_block_page(
    gateway: Gateway,  # noqa: F811
    pupil_page: Any,
) -> None:
    expect, page = sync_api.expect, pupil_page
    page.goto("http://games.test/maths-game")
    expect(page.get_by_role("heading", level=1)).to_have_text("This page is blocked")
    expect(page.get_by_text(MONITORED)).to_be_visible()
    shoot(page, "block-page.png")

    page.get_by_role("link", name="Report a page").click()
    expect(page).to_have_url("http://schoolgate.local/report-page")
    page.get_by_label("Which page?").fill("http://plain.test/chat/room-3")
    page.get_by_label("It upset me or worried me").check()
    page.get_by_label("Tell us more").fill("someone said mean things about my friend")
    shoot(page, "portal-report-page.png")
    page.get_by_role("button", name="Send").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you for telling us")
    expect(page.get_by_text("Mrs Dee, who keeps pupils safe at school")).to_be_visible()
    expect(page.get_by_text(ADULT)).to_be_visible()
    shoot(page, "portal-report-thanks.png")
    report = rows(gateway, reports)[-1]
    assert (report.audience, report.state, report.url) == (
        "safeguarding",
        "new",
        "http://plain.test/chat/room-3",
    )


def test_a_self_harm_site_shows_the_calm_page(pupil_page: Any) -> None:
    expect, page = sync_api.expect, pupil_page
    page.goto("http://hurt.test/ways")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "This page is not available at school"
    )
    expect(page.get_by_role("link", name="childline.org.uk")).to_be_visible()
    expect(page.get_by_text(ADULT)).to_be_visible()
    assert page.locator("form").count() == 0
    shoot(page, "block-page-sensitive.png")
