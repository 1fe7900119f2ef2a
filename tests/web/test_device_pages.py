"""The device inventory pages of the admin web app: Flask's test client on a real store, and
one look in a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.report import parse_report
from agent.tunnel.config import new_private_key, public_key
from proxy_addons.core.policy.model import Tunnel
from proxy_addons.devices import asset_log, enrolment, reports, tunnels
from proxy_addons.devices.asset_log import Allocation
from proxy_addons.store import Store
from proxy_addons.store.schema import devices
from tests.devices.test_device_api import report
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_webapp import PASSWORD, Web, make_web, seed, seeded_db, sign_in  # noqa: F401
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS

KEY = b"enrol-secret-for-pages"
TUNNEL = Tunnel(ipaddress.IPv4Network("10.123.0.0/24"), "gw.school.example:51820")


def add_device(store: Store, hostname: str, at: dt.datetime | None, **changes: Any) -> str:
    # enrolled well before the reports the tests date in the past (history starts at enrolment)
    enrolled = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    device_id, _ = enrolment.enrol(store, KEY.decode(), KEY, hostname, enrolled)
    if at is not None:
        sent = report(device_id, at, hostname=hostname, **changes)
        reports.record_report(store, parse_report(sent), at, source=(sent["ips"] or [None])[0])
    return device_id


@pytest.fixture
def inventory(
    tmp_path: Path,
    seeded_db: Path,  # noqa: F811
) -> Iterator[tuple[Web, dict[str, str]]]:
    web = make_web(tmp_path / "var", seeded_db)
    now = dt.datetime.now(dt.UTC)
    failing = [
        {
            "id": "disk_encryption",
            "status": "fail",
            "reason": "The root filesystem is not encrypted.",
            "evidence": {"device": "/dev/vda", "chain": ["vda(plain)"]},
        },
        {"id": "firewall", "status": "pass", "reason": "nftables has rules"},
    ]
    ids = {
        "good": add_device(web.store, "library-pc-01", now),
        "bad": add_device(web.store, "<b>lab</b>-pc", now, results=failing, user="jsmith"),
        "silent": add_device(web.store, "old-laptop", now - dt.timedelta(days=30)),
    }
    yield web, ids
    web.store.dispose()


def test_the_it_provider_sees_the_inventory_and_each_devices_checks(
    inventory: tuple[Web, dict[str, str]],
) -> None:
    web, ids = inventory
    client = sign_in(web, "tech")
    listing = client.get("/devices")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert "3 devices, 2 not compliant" in html  # no MDM here: all enrolled with the agent
    assert "library-pc-01" in html and "old-laptop" in html
    assert "&lt;b&gt;lab&lt;/b&gt;-pc" in html and "<b>lab</b>" not in html  # escaped
    assert ">Compliant<" in html and ">Not compliant<" in html and ">Stale<" in html
    assert "Not passing: disk_encryption" in html and "user jsmith" in html
    assert 'href="/devices"' in html  # the nav link, for the IT provider

    detail = client.get(f"/devices/{ids['bad']}").get_data(as_text=True)
    assert "The root filesystem is not encrypted." in detail
    assert "/dev/vda" in detail and "vda(plain)" in detail  # the raw evidence
    assert 'class="status fail">fail<' in detail and 'class="status pass">pass<' in detail
    # each check in the governors' report's words, its id beside it for the docs and the CLI
    assert 'Disk encrypted</span> <code class="meta">disk_encryption</code>' in detail
    assert "jsmith" in detail and "00:11:22:33:44:55" in detail
    stale = client.get(f"/devices/{ids['silent']}").get_data(as_text=True)
    assert "stale: no report for over 7 days" in stale
    assert client.get("/devices/dev-nope").status_code == 404


def away(web: Web, hostname: str) -> str:
    """A laptop with a tunnel, whose agent last said it was away without it."""
    now = dt.datetime.now(dt.UTC)
    device_id = add_device(web.store, hostname, None)
    tunnels.bind(web.store, TUNNEL, device_id, public_key(new_private_key()), now, "device")
    down = {
        "state": "down",
        "where": "off_site",
        "since": (now - dt.timedelta(hours=2)).isoformat(),
    }
    sent = report(device_id, now, hostname=hostname, tunnel=down | {"fail_closed": True})
    reports.record_report(web.store, parse_report(sent), now, source=None)
    return device_id


def test_a_laptop_away_without_its_tunnel_shows_in_the_list_and_its_page(
    inventory: tuple[Web, dict[str, str]],
) -> None:
    web, ids = inventory
    device_id = away(web, "year6-laptop-12")
    client = sign_in(web, "tech")
    listing = client.get("/devices").get_data(as_text=True)
    assert listing.count("Away from school without its tunnel since") == 1
    page = client.get(f"/devices/{device_id}").get_data(as_text=True)
    assert "Off-site tunnel" in page and "10.123.0.2" in page
    assert ">Down<" in page and "away from school; its web is blocked while the tunnel" in page
    assert "Down since" in page and "Last handshake</dt><dd>never" in page
    plain = client.get(f"/devices/{ids['good']}").get_data(as_text=True)
    assert "Off-site tunnel" not in plain  # no tunnels in this policy, none bound

    enrolment.revoke(web.store, ids["good"], "tech", "lost", dt.datetime.now(dt.UTC))
    assert ">Revoked<" in client.get("/devices").get_data(as_text=True)
    revoked = client.get(f"/devices/{ids['good']}").get_data(as_text=True)
    assert "by tech: its token is refused" in revoked


@pytest.mark.parametrize("name", ["teacher", "dsl", "deputy"])
def test_other_staff_are_refused_and_see_no_link(
    inventory: tuple[Web, dict[str, str]], name: str
) -> None:
    web, ids = inventory
    client = sign_in(web, name)
    for path in ("/devices", f"/devices/{ids['bad']}"):
        refused = client.get(path)
        assert refused.status_code == 403
        assert "for the IT provider only" in refused.get_data(as_text=True)
        assert "jsmith" not in refused.get_data(as_text=True)
    assert 'href="/devices"' not in client.get("/unblocks").get_data(as_text=True)


def test_signed_out_visitors_are_sent_to_sign_in(inventory: tuple[Web, dict[str, str]]) -> None:
    web, _ = inventory
    answer = web.client().get("/devices")
    assert answer.status_code == 302 and "/login?next=/devices" in answer.headers["Location"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_the_inventory_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    web = make_web(tmp_path / "var", seed(tmp_path / "seed"), secure_cookies=False)
    now = dt.datetime.now(dt.UTC)
    failing = [{"id": "firewall", "status": "fail", "reason": "No firewall is filtering."}]
    device_id = add_device(web.store, "lab-pc-07", now, results=failing)
    laptop = away(web, "year6-laptop-12")
    served = serve(web.app)
    base = served.url
    expect = sync_api.expect
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"{base}/devices")
                expect(page).to_have_url(re.compile(r"/login\?next="))
                page.get_by_label("User name").fill("tech")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page).to_have_url(f"{base}/devices")
                page.get_by_role("link", name=re.compile("lab-pc-07")).click()
                expect(page).to_have_url(f"{base}/devices/{device_id}")
                expect(page.locator("h1 .status")).to_have_text("Not compliant")
                expect(page.get_by_text("No firewall is filtering.")).to_be_visible()
                page.goto(f"{base}/devices/{laptop}")
                expect(page.get_by_role("heading", name="Off-site tunnel")).to_be_visible()
                page.screenshot(path=str(shot("device-tunnel.png")), full_page=True)
            finally:
                browser.close()
    finally:
        served.stop()
        web.store.dispose()


def test_allocation_and_mdm_devices_show_in_the_list_and_on_the_page(
    inventory: tuple[Web, dict[str, str]],
) -> None:
    web, ids = inventory
    now = dt.datetime.now(dt.UTC)
    allocation = Allocation("Year 6 trolley", "OAK-0042", "Room 12")
    asset_log.set_allocation(web.store, ids["good"], allocation, "tech", now)
    with web.store.begin() as conn:
        conn.execute(
            devices.update().where(devices.c.device_id == ids["silent"]).values(source="mdm")
        )
    client = sign_in(web, "tech")
    listing = client.get("/devices").get_data(as_text=True)
    assert "allocated to Year 6 trolley · OAK-0042" in listing
    assert listing.count(">from MDM<") == 1
    assert "3 devices (1 from the MDM's export, the rest enrolled with the agent)" in listing
    page = client.get(f"/devices/{ids['good']}").get_data(as_text=True)
    assert "Allocated to Year 6 trolley · asset tag OAK-0042 · Room 12" in page
    assert ">from MDM<" in client.get(f"/devices/{ids['silent']}").get_data(as_text=True)
