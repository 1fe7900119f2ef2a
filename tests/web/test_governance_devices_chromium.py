"""A governor reads the devices' section of the termly report in a real headless Chromium,
after the autumn term: the school's devices against the DfE cyber security standard, check
by check, with the iPad from the MDM marked and the device that never reported counted as
not known. Screenshot: docs/screenshots/governors-devices.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.web.app import create_app
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.devices.test_term_compliance import seed
from tests.support.admin_browser import signed_in
from tests.support.screenshots import shot
from tests.web.test_governance import seed_governance
from tests.web.test_governance_chromium import autumn_policy
from tests.web.test_webapp import SECRET
from tests.web.test_webapp_chromium import CHROMIUM

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")

NOW = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)  # the Monday after the autumn term


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(seed_governance(tmp_path / "seed"), var / DB_FILE)
    store = Store.open(store_url(var))
    seed(store)
    policy = load_policy(autumn_policy(tmp_path / "policy"))
    workflow = UnblockWorkflow(store, lambda: policy, send_in_background=False, clock=lambda: NOW)
    yield create_app(workflow, store, secret_key=SECRET, secure_cookies=False)
    store.dispose()


def test_a_governor_reads_the_school_devices_over_the_term(app: Any) -> None:
    expect = sync_api.expect
    report = "/report/term?term=Autumn%202026"
    with signed_in(app, "governor", report, viewport={"width": 1100, "height": 900}) as (page, _):
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
