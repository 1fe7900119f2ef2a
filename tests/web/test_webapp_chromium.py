"""The admin web app in a real headless Chromium: a teacher asks, the DSL approves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.core.unblocks import Status
from tests.support.web_server import serve
from tests.web.test_webapp import PASSWORD, Web, make_web, seed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Web, str]]:
    # Plain http on loopback, so the session cookie can't be Secure here (a browser drops
    # Secure cookies set over http); real deployments keep secure_cookies=True behind HTTPS.
    web = make_web(tmp_path / "var", seed(tmp_path / "seed"), secure_cookies=False)
    served = serve(web.app)
    yield web, served.url
    served.stop()
    web.store.dispose()


def test_teacher_asks_and_the_dsl_approves_in_chromium(
    served: tuple[Web, str], tmp_path: Path
) -> None:
    web, base = served
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(15_000)

            def sign_in(name: str) -> None:
                page.goto(f"{base}/unblocks")  # each person's home differs: ask for the page
                expect(page).to_have_url(re.compile(r"/login\?next="))
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page).to_have_url(f"{base}/unblocks")
                expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()

            # The teacher files a request from the link a block page gives staff.
            sign_in("teacher")
            page.goto(f"{base}/unblocks/new?url=https://video.example.com/watch/lesson-3")
            expect(page.get_by_label("Web address")).to_have_value(
                "https://video.example.com/watch/lesson-3"
            )
            page.get_by_label("For", exact=True).select_option("users")
            page.get_by_label("Who").fill("pupil, pupil2")
            page.get_by_label("Minutes from now").fill("45")
            page.get_by_label("Educational reason").fill("Year 6 science: the digestive system")
            page.get_by_role("button", name="Send the request").click()
            expect(page.get_by_role("heading", level=1)).to_contain_text("Unblock UB-")
            expect(page.locator("h1 .status")).to_have_text("Waiting for a DSL or deputy")
            unblock_id = page.url.rsplit("/", 1)[-1]
            assert web.workflow.get(unblock_id).status is Status.PENDING
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_text("You have signed out.")).to_be_visible()

            # The DSL opens it from the list and approves it with a comment.
            sign_in("dsl")
            page.get_by_role("link", name=re.compile(unblock_id)).click()
            expect(page).to_have_url(f"{base}/unblocks/{unblock_id}")
            page.get_by_label("Comment").fill("Checked the video: fine for Year 6.")
            page.get_by_role("button", name="Approve").click()
            expect(page.locator("h1 .status")).to_have_text("Active")
            expect(page.get_by_text("Checked the video: fine for Year 6.")).to_be_visible()
            page.screenshot(path=str(tmp_path / "approved.png"), full_page=True)
        finally:
            browser.close()

    unblock = web.workflow.get(unblock_id)
    assert unblock.status is Status.ACTIVE
    assert unblock.requested_by == "teacher" and unblock.audience == ("pupil", "pupil2")
    row = web.workflow.details(unblock_id)
    assert row["decided_by"] == "dsl"
    assert row["decision_comment"] == "Checked the video: fine for Year 6."
