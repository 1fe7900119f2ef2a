"""The block page's forms in real headless Chromium, through a real gateway (mitmdump).

A teacher and a pupil, signed in to the proxy (Playwright answers the gateway's 407), each
send a block page's form, see it shown back on the portal's own origin and press Send. Script
on an allowed page of the blocked site's own origin (http://mixed.test/ beside the blocked
http://mixed.test/adult) tries the attack the red team found and files nothing. Screenshots of
the confirmation pages are kept in the test's folder (run with --basetemp to look at them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.store.schema import reports, unblocks
from tests.checks.test_check_page_chromium import CHROMIUM, spki_hash
from tests.conftest import Gateway
from tests.gateway.test_gateway_identity import auth_gateway  # noqa: F401  (a fixture: teacher, pupil)
from tests.gateway.test_portal_identity_e2e import rows

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")

PORTAL = "http://schoolgate.local"

# Script on http://mixed.test/ (allowed): read the blocked page beside it, take any token it
# holds, and post the teacher's unblock request to the portal every way a page can.
ATTACK = """async () => {
  const page = await (await fetch('/adult')).text();
  const found = page.match(/name="csrf_token" value="([^"]+)"/);
  const form = {url: 'http://mixed.test/', scope: 'domain', audience: 'profile:ks2',
                minutes: '10080', reason: 'filed by script', ref: 'SG-SCRIPT'};
  if (found) form.csrf_token = found[1];
  const sent = await fetch('http://schoolgate.local/unblock/request',
                           {method: 'POST', mode: 'no-cors', body: new URLSearchParams(form)});
  let readable = true;
  try {
    await fetch('http://schoolgate.local/unblock/request',
                {method: 'POST', body: new URLSearchParams(form)});
  } catch (e) { readable = false; }
  return {token: !!found, sent: sent.type, readable: readable};
}"""


@pytest.fixture
def browser_for(auth_gateway: Gateway) -> Iterator[Any]:  # noqa: F811
    """Opens a Chromium page signed in to the gateway's proxy as (user, password)."""
    with sync_api.sync_playwright() as pw:
        browsers: list[Any] = []

        def open_page(user: str, password: str) -> Any:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    f"--ignore-certificate-errors-spki-list={spki_hash(auth_gateway.ca)}",
                ],
                proxy={"server": auth_gateway.proxy, "username": user, "password": password},
            )
            browsers.append(browser)
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            page.set_default_timeout(20_000)
            return page

        yield open_page
        for browser in browsers:
            browser.close()


def test_a_teacher_asks_from_the_block_page_and_confirms_on_the_portal(
    auth_gateway: Gateway,  # noqa: F811
    browser_for: Any,
    tmp_path: Path,
) -> None:
    expect = sync_api.expect
    page = browser_for("teacher", "t-pass")
    before = [r.id for r in rows(auth_gateway, unblocks)]

    # The attack as found, from script on the blocked site's own (allowed) origin.
    page.goto("http://mixed.test/")
    tried = page.evaluate(ATTACK)
    assert tried == {"token": False, "sent": "opaque", "readable": False}
    assert [r.id for r in rows(auth_gateway, unblocks)] == before

    # What the teacher does: the block page's form, then Send on the portal.
    response = page.goto("http://mixed.test/adult")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This page is blocked")
    page.get_by_label("What should open?").select_option("domain")
    page.get_by_label("For whom?").select_option("profile:ks2")
    page.get_by_label("For how long?").select_option("60")
    page.get_by_label("Why do you need it for teaching?").fill("Year 6 PSHE: online safety")
    page.get_by_role("button", name="Request access for a lesson").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Send this request?")
    assert page.url == f"{PORTAL}/unblock/request"
    for shown in ("mixed.test/adult", "The whole website", "KS2", "1 hour", "online safety"):
        expect(page.locator("main")).to_contain_text(shown)
    assert [r.id for r in rows(auth_gateway, unblocks)] == before  # nothing sent yet
    page.screenshot(path=str(tmp_path / "confirm-teacher.png"), full_page=True)
    sent = page.evaluate("() => Object.fromEntries(new FormData(document.querySelector('form')))")
    page.get_by_role("button", name="Send the request").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Thank you")
    expect(page.locator("main")).to_contain_text("UB-")
    page.screenshot(path=str(tmp_path / "sent-teacher.png"), full_page=True)

    # Back: the browser sends the block page's form again, which is only shown back again;
    # that confirmation's form, sent with the token already used, acts no more (a second
    # click, a resent form).
    page.go_back()
    expect(page.get_by_role("heading", level=1)).to_have_text("Send this request?")
    page.evaluate(
        "(token) => { document.querySelector('input[name=csrf_token]').value = token; }",
        sent["csrf_token"],
    )
    page.get_by_role("button", name="Send the request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("This was sent already")
    page.screenshot(path=str(tmp_path / "again-teacher.png"), full_page=True)

    [row] = [r for r in rows(auth_gateway, unblocks) if r.id not in before]
    assert (row.requested_by, row.status, row.target, row.audience) == (
        "teacher",
        "pending",
        "mixed.test",
        ["ks2"],
    )

    # A form another page of the site submits in the top window lands on the confirmation.
    page.goto("http://mixed.test/")
    page.evaluate(
        """() => {
          const f = document.createElement('form');
          f.method = 'post'; f.action = 'http://schoolgate.local/unblock/request';
          for (const [k, v] of Object.entries({url: 'http://mixed.test/', reason: 'trick'})) {
            const i = document.createElement('input'); i.name = k; i.value = v; f.append(i);
          }
          document.body.append(f); f.submit();
        }"""
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("Send this request?")
    assert len(rows(auth_gateway, unblocks)) == len(before) + 1


def test_a_pupil_reports_a_mistake_and_confirms_on_the_portal(
    auth_gateway: Gateway,  # noqa: F811
    browser_for: Any,
    tmp_path: Path,
) -> None:
    expect = sync_api.expect
    page = browser_for("pupil", "p-pass")
    before = len(rows(auth_gateway, reports))
    response = page.goto("https://adult.test/science/body")
    assert response is not None and response.status == 403
    page.get_by_label("What were you trying to do?").fill("My homework about the human body")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Send this to the school?")
    assert page.url == "https://schoolgate.local/report"
    expect(page.locator("main")).to_contain_text("My homework about the human body")
    assert len(rows(auth_gateway, reports)) == before
    page.screenshot(path=str(tmp_path / "confirm-pupil.png"), full_page=True)
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Thank you")
    record = rows(auth_gateway, reports)[-1]
    assert (record.username, record.text, record.url) == (
        "pupil",
        "My homework about the human body",
        "https://adult.test/science/body",
    )
