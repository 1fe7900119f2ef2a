"""A governor reads the devices' section of the termly report in a real headless Chromium,
after the autumn term: the school's devices against the DfE cyber security standard, check
by check, with the iPad from the MDM marked and the device that never reported counted as
not known. Screenshot: docs/screenshots/governors-devices.png."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.web.app import create_app
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.devices.test_term_compliance import seed
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_governance import seed_governance
from tests.web.test_governance_chromium import autumn_policy
from tests.web.test_webapp import PASSWORD, SECRET
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")

NOW = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)  # the Monday after the autumn term


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(seed_governance(tmp_path / "seed"), var / DB_FILE)
    store = Store.open(store_url(var))
    seed(store)
    policy = load_policy(autumn_policy(tmp_path / "policy"))
    workflow = UnblockWorkflow(store, lambda: policy, send_in_background=False, clock=lambda: NOW)
    app = create_app(workflow, store, secret_key=SECRET, secure_cookies=False)
    served = serve(app)
    yield served.url
    served.stop()
    store.dispose()


def test_a_governor_reads_the_school_devices_over_the_term(served: str) -> None:
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(f"{served}/login")
            page.get_by_label("User name").fill("governor")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).not_to_have_url(re.compile(r"/login"))
            page.goto(f"{served}/report/term?term=Autumn 2026")
            section = page.locator("#devices")
            expect(section.get_by_role("heading", level=2)).to_have_text(
                "School devices against the DfE cyber security standard"
            )
            expect(section).to_contain_text("6 school devices, 1 of them from the school's")
            expect(section).to_contain_text("1 never did, so their state is not known")
            expect(page.locator("#devices-unknown")).to_have_text("1")
            table = page.locator("#device-checks")
            expect(table.get_by_role("row")).to_have_count(1 + 4)  # the header and four checks
            expect(table).to_contain_text("Security updates installed in time (14 days at most)")
            expect(table.get_by_role("columnheader", name="From the MDM")).to_be_visible()
            for name in ("good-pc", "never-pc", "iPad 12", "jsmith"):
                expect(section).not_to_contain_text(name)
            section.screenshot(path=str(shot("governors-devices.png")))
        finally:
            browser.close()
