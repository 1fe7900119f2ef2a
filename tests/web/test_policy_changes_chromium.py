"""Filtering changes, four eyes, in a real headless Chromium: the IT provider proposes a
site for the social list with a reason; the page offers them no approval and the app
refuses one posted anyway; the DSL approves; the watched policy has the change within 2 s;
the audit trail holds who proposed, who approved, why and the diff.
Screenshot: docs/screenshots/policy-changes.png (the DSL's view of the waiting change)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.core.policy.runtime import PolicyRuntime
from proxy_addons.store import Store, store_url
from proxy_addons.web.app import create_app
from proxy_addons.workflow import audit
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.conftest import copy_policy
from tests.core.test_decision import PUPIL, ask
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_webapp import DB_FILE, PASSWORD, SECRET, seed
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")

NEW_SITE = "https://newchat.test/"


@pytest.fixture
def school(tmp_path: Path) -> Iterator[tuple[str, Store, PolicyRuntime]]:
    path = copy_policy(tmp_path)
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(seed(tmp_path / "seed"), var / DB_FILE)
    runtime = PolicyRuntime(path, var)  # the gateway's watched reload
    runtime.start()
    runtime.watch()
    store = Store.open(store_url(var))
    workflow = UnblockWorkflow(store, lambda: runtime.current.policy if runtime.current else None)  # type: ignore[arg-type,return-value]
    served = serve(create_app(workflow, store, secret_key=SECRET, secure_cookies=False))
    try:
        yield served.url, store, runtime
    finally:
        served.stop()
        runtime.stop_watching()
        store.dispose()


def test_propose_refused_self_approval_approve_in_force_in_chromium(
    school: tuple[str, Store, PolicyRuntime],
) -> None:
    base, store, runtime = school
    expect = sync_api.expect
    assert runtime.current is not None
    assert ask(runtime.current, NEW_SITE, PUPIL).category != "social"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(15_000)

            def sign_in(name: str) -> None:
                page.goto(f"{base}/changes")
                expect(page).to_have_url(re.compile(r"/login\?next="))
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page).to_have_url(f"{base}/changes")

            # The IT provider proposes the site, with the reason.
            sign_in("tech")
            page.get_by_role("link", name="Filtering changes").click()
            page.get_by_label("List").select_option("lists/social.txt")
            page.get_by_label("Site").fill("newchat.test")
            page.locator("#site-reason").fill("Pupils found a chat site the lists miss")
            page.locator("form:has(#site-value) button").click()
            expect(
                page.get_by_text("Proposed: Add newchat.test to lists/social.txt")
            ).to_be_visible()
            waiting = page.locator("section.change").first
            expect(waiting).to_contain_text("+newchat.test")
            expect(waiting.get_by_text("You proposed this")).to_be_visible()
            expect(waiting.get_by_role("button", name="Approve and apply")).to_have_count(0)
            # Posted anyway (as a crafted form would be): refused.
            cid = (waiting.get_attribute("id") or "").removeprefix("change-")
            csrf = waiting.locator("input[name=csrf_token]").first.get_attribute("value")
            answer = page.request.post(
                f"{base}/changes/{cid}/approve", form={"csrf_token": csrf or "", "note": ""}
            )
            assert "Nobody approves their own change" in answer.text()
            assert ask(runtime.current, NEW_SITE, PUPIL).category != "social"
            page.get_by_role("button", name="Sign out").click()

            # The DSL sees it waiting, with the diff, and approves it.
            sign_in("dsl")
            waiting = page.locator(f"#change-{cid}")
            expect(waiting).to_contain_text("Proposed by tech")
            expect(waiting).to_contain_text("Pupils found a chat site the lists miss")
            page.screenshot(path=str(shot("policy-changes.png")), full_page=True)
            waiting.get_by_label("Note (optional)").fill("Checked: a chat site with strangers")
            waiting.get_by_role("button", name="Approve and apply").click()
            approved_at = time.monotonic()
            expect(page.get_by_text("Approved and applied")).to_be_visible()
            while ask(runtime.current, NEW_SITE, PUPIL).category != "social":
                assert time.monotonic() - approved_at < 2.0, "not in force within 2 s"
                time.sleep(0.05)
            page.reload()
            done = page.locator(f"#change-{cid}")
            expect(done).to_contain_text("Applied by dsl")
            done.get_by_text("The diff").click()
            expect(done.locator(".diff .add")).to_have_text("+newchat.test")
            page.screenshot(path=str(shot("policy-changes-history.png")), full_page=True)
        finally:
            browser.close()

    applied = [r for r in audit.records(store) if r.action == "policy.change_applied"]
    assert len(applied) == 1
    record = applied[0]
    assert (record.actor, record.detail["proposed_by"]) == ("dsl", "tech")
    assert record.detail["reason"] == "Pupils found a chat site the lists miss"
    assert "+newchat.test" in record.detail["diff"]
