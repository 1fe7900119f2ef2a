"""The asset log set from a device's page: the IT provider only, with a CSRF token; each
change audited with old and new values and who made it; a bad value changes nothing. A
span of history the MDM reported says "from MDM". Then the form in Chromium."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.devices.inventory import list_devices
from proxy_addons.devices.mdm_import import import_mdm
from proxy_addons.store.schema import audit_log, devices
from tests.support.admin_browser import signed_in
from tests.support.screenshots import shot
from tests.web.test_device_history_page import with_history
from tests.web.test_device_pages import add_device
from tests.web.test_webapp import (  # noqa: F401
    Web,
    make_web,
    page_token,
    seed,
    seeded_db,
    sign_in,
)
from tests.web.test_webapp_chromium import CHROMIUM

FIELDS = ("allocated_to", "asset_tag", "location")


def allocation_of(web: Web, device_id: str) -> tuple[Any, ...]:
    with web.store.connect() as conn:
        row = conn.execute(
            sa.select(*(devices.c[f] for f in FIELDS)).where(devices.c.device_id == device_id)
        ).one()
    return tuple(row)


def audited(web: Web) -> list[Any]:
    with web.store.connect() as conn:
        return list(
            conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.action == "device.allocation")
                .order_by(audit_log.c.seq)
            )
        )


def test_the_it_provider_sets_the_asset_log_and_it_is_audited(
    tmp_path: Path,
    seeded_db: Path,  # noqa: F811
) -> None:
    web = make_web(tmp_path / "var", seeded_db)
    device_id = add_device(web.store, "year5-laptop-03", None)
    tech = sign_in(web, "tech")
    page = f"/devices/{device_id}"
    form = {
        "csrf_token": page_token(tech, page),
        "allocated_to": "  Year 5 trolley  ",
        "asset_tag": "A01234",
        "location": "Year 5 classroom",
    }
    answer = tech.post(f"{page}/allocation", data=form)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"{page}#allocation")
    assert allocation_of(web, device_id) == ("Year 5 trolley", "A01234", "Year 5 classroom")
    shown = tech.get(page).get_data(as_text=True)
    assert "The asset log is updated." in shown
    assert 'value="Year 5 trolley"' in shown and 'value="A01234"' in shown
    # An empty box clears its field; the rest is kept; the audit names old and new values.
    form = {**form, "csrf_token": page_token(tech, page), "location": ""}
    assert tech.post(f"{page}/allocation", data=form).status_code == 303
    assert allocation_of(web, device_id) == ("Year 5 trolley", "A01234", None)
    rows = audited(web)
    assert [(r.actor, r.subject) for r in rows] == [("tech", device_id)] * 2
    assert rows[0].detail["via"] == "web"
    assert rows[0].detail["changed"]["asset_tag"] == {"from": None, "to": "A01234"}
    assert rows[1].detail["changed"] == {"location": {"from": "Year 5 classroom", "to": None}}
    # The same values again change nothing and add nothing to the audit trail.
    form["csrf_token"] = page_token(tech, page)
    tech.post(f"{page}/allocation", data=form)
    assert "Nothing had changed." in tech.get(page).get_data(as_text=True)
    assert len(audited(web)) == 2
    web.store.dispose()


def test_a_bad_value_changes_nothing_and_says_why(tmp_path: Path, seeded_db: Path) -> None:  # noqa: F811
    web = make_web(tmp_path / "var", seeded_db)
    device_id = add_device(web.store, "year5-laptop-03", None)
    tech = sign_in(web, "tech")
    page = f"/devices/{device_id}"
    form = {
        "csrf_token": page_token(tech, page),
        "allocated_to": "Mr Jones",
        "asset_tag": "A" * 101,
        "location": "Room 4",
    }
    assert tech.post(f"{page}/allocation", data=form).status_code == 303
    shown = tech.get(page).get_data(as_text=True)
    assert "Nothing was changed: asset tag should be one line of at most 100" in shown
    form = {**form, "csrf_token": page_token(tech, page), "asset_tag": "A1\nA2"}
    tech.post(f"{page}/allocation", data=form)
    assert allocation_of(web, device_id) == (None, None, None)
    assert audited(web) == []
    unknown = tech.post("/devices/no-such-device/allocation", data=form)
    assert unknown.status_code == 404
    web.store.dispose()


def test_only_the_it_provider_with_a_csrf_token(tmp_path: Path, seeded_db: Path) -> None:  # noqa: F811
    web = make_web(tmp_path / "var", seeded_db)
    device_id = add_device(web.store, "year5-laptop-03", None)
    path = f"/devices/{device_id}/allocation"
    for name in ("teacher", "dsl"):
        client = sign_in(web, name)
        token = page_token(client, "/unblocks")
        answer = client.post(path, data={"csrf_token": token, "allocated_to": name})
        assert answer.status_code == 403, name
        assert "for the IT provider only" in answer.get_data(as_text=True)
    tech = sign_in(web, "tech")
    assert tech.post(path, data={"allocated_to": "Mr Jones"}).status_code == 400
    assert tech.post(path, data={"csrf_token": "forged", "allocated_to": "x"}).status_code == 400
    assert allocation_of(web, device_id) == (None, None, None)
    assert audited(web) == []
    web.store.dispose()


def test_a_span_the_mdm_reported_says_from_mdm(tmp_path: Path, seeded_db: Path) -> None:  # noqa: F811
    web = make_web(tmp_path / "var", seeded_db)
    seen = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    export = (
        "name,serial,model,os,os_version,last_seen,encrypted,passcode,compliant\n"
        f"Year 5 iPad 12,DMPXK1A2B3C4,iPad (9th generation),iPadOS,17.5.1,{seen},yes,no,no\n"
    )
    import_mdm(web.store, export, "tech", dt.datetime.now(dt.UTC), dt.UTC)
    agent_device = with_history(web)
    tech = sign_in(web, "tech")
    ipad = next(d for d in list_devices(web.store, dt.datetime.now(dt.UTC), 7) if d.from_mdm)
    page = tech.get(f"/devices/{ipad.device_id}").get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
    assert len(rows) == 1 and "Not compliant" in rows[0] and "from MDM" in rows[0]
    agents = tech.get(f"/devices/{agent_device}").get_data(as_text=True)
    assert "from MDM" not in agents.split("<tbody>")[1]
    web.store.dispose()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_the_allocation_form_in_chromium(tmp_path: Path) -> None:
    expect = pytest.importorskip("playwright.sync_api", reason="needs playwright").expect
    web = make_web(tmp_path / "var", seed(tmp_path / "seed"), secure_cookies=False)
    device_id = with_history(web)
    with signed_in(web.app, "tech", f"/devices/{device_id}") as (page, base):
        page.get_by_label("Allocated to").fill("Year 5 trolley (Mrs Khan)")
        page.get_by_label("Asset tag").fill("A01234")
        page.get_by_label("Location").fill("Year 5 classroom, trolley 2")
        page.get_by_role("button", name="Save the asset log").click()
        expect(page).to_have_url(f"{base}/devices/{device_id}#allocation")
        expect(page.get_by_role("status")).to_have_text("The asset log is updated.")
        expect(page.get_by_label("Asset tag")).to_have_value("A01234")
        expect(page.get_by_text("Allocated to Year 5 trolley (Mrs Khan)")).to_be_visible()
        page.screenshot(path=str(shot("device-allocation.png")), full_page=True)
    assert allocation_of(web, device_id)[1] == "A01234"
    web.store.dispose()
