"""A device's page shows its history over the term: spans of compliant and not compliant,
newest first, how long each lasted and the checks that failed; another term is asked for by
name, and one the policy doesn't name is refused. Then the page in Chromium."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from agent.report import parse_report
from proxy_addons.devices import reports
from tests.devices.test_device_api import report
from tests.support.admin_browser import signed_in
from tests.support.screenshots import shot
from tests.web.test_device_pages import add_device
from tests.web.test_webapp import Web, make_web, seed, seeded_db, sign_in  # noqa: F401
from tests.web.test_webapp_chromium import CHROMIUM


def failing(*checks: str) -> list[dict[str, Any]]:
    passed = [{"id": "firewall", "status": "pass", "reason": "nftables has rules"}]
    return passed + [{"id": c, "status": "fail", "reason": f"{c} is off"} for c in checks]


def with_history(web: Web) -> str:
    """A laptop compliant a week ago, unencrypted for three days and a half, then fixed."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    device_id = add_device(web.store, "year5-laptop-03", None)
    for days, checks in (
        (7, ()),
        (6, ()),
        (5, ("disk_encryption",)),
        (3, ("disk_encryption", "screen_lock")),
        (1.5, ()),
        (0.5, ()),
    ):
        at = now - dt.timedelta(days=days)
        add_device_report(web, device_id, at, failing(*checks))
    return device_id


def add_device_report(web: Web, device_id: str, at: dt.datetime, results: list[Any]) -> None:
    sent = report(device_id, at, hostname="year5-laptop-03", results=results)
    reports.record_report(web.store, parse_report(sent), at, source="10.1.2.3")


def test_the_device_page_shows_its_history_over_the_term(tmp_path: Path, seeded_db: Path) -> None:  # noqa: F811
    web = make_web(tmp_path / "var", seeded_db)
    device_id = with_history(web)
    client = sign_in(web, "tech")
    page = client.get(f"/devices/{device_id}").get_data(as_text=True)
    assert "History: Whole year (1 Jan 2026 to 31 Dec 2027)" in page
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    states = [re.findall(r'class="status [a-z_]+">([^<]+)<', r) for r in rows]
    assert states == [["Compliant"], ["Not compliant"], ["Compliant"]]
    assert "still, at its last report" in rows[0]
    assert "3 days 12 hours" in rows[1] and "Disk encrypted; Screen locks when left" in rows[1]
    assert "(2 reports)" in rows[1] and "2 days" in rows[2]
    refused = client.get(f"/devices/{device_id}?term=Summer 1999")
    assert refused.status_code == 404
    assert "No term called" in refused.get_data(as_text=True)
    named = client.get(f"/devices/{device_id}?term=whole year").get_data(as_text=True)
    assert "History: Whole year" in named


def test_a_device_with_no_reports_says_so(tmp_path: Path, seeded_db: Path) -> None:  # noqa: F811
    web = make_web(tmp_path / "var", seeded_db)
    device_id = add_device(web.store, "new-laptop", None)
    page = sign_in(web, "tech").get(f"/devices/{device_id}").get_data(as_text=True)
    assert "No reports kept for this period" in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_the_history_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    web = make_web(tmp_path / "var", seed(tmp_path / "seed"), secure_cookies=False)
    device_id = with_history(web)
    try:
        with signed_in(web.app, "tech", f"/devices/{device_id}") as (page, _base):
            history = page.locator("table.history")
            sync_api.expect(history.locator("tbody tr")).to_have_count(3)
            sync_api.expect(
                history.get_by_text("Disk encrypted; Screen locks when left")
            ).to_be_visible()
            page.screenshot(path=str(shot("device-history.png")), full_page=True)
    finally:
        web.store.dispose()
