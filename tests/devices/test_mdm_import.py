"""Devices from the school's MDM export on real stores: the documented columns and Intune's,
listed as from MDM, never usable as enrolled agents, a bad line refusing the whole file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.cli.main import main as schoolgate
from proxy_addons.devices import enrolment, inventory
from proxy_addons.devices.asset_log import ImportRefused
from proxy_addons.devices.mdm_import import import_mdm
from proxy_addons.store import Store
from proxy_addons.store.schema import audit_log, device_reports
from tests.devices.test_device_api import SECRET, T0
from tests.devices.test_device_watch import watched_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

LONDON = dt.timezone(dt.timedelta(0), "Europe/London in winter")
DOCUMENTED = (
    "name,serial,model,os,os_version,last_seen,encrypted,passcode,compliant\n"
    "Year 5 iPad 12,DMPXK1A2B3C4,iPad (9th generation),iPadOS,17.5.1,"
    "2026-11-24 15:10,yes,yes,yes\n"
    "Library Chromebook 3,5CD123ABC,HP Chromebook 11 G9,ChromeOS,126.0,"
    "2026-11-20T08:00:00+00:00,yes,no,\n"
)
# The columns of Intune's Devices > All devices > Export (a few of its many), as it writes them.
INTUNE = (
    "Device ID,Device name,Enrollment date,Last check-in,OS version,Serial number,"
    "Manufacturer,Model,Compliance,Managed by,Encrypted,OS\n"
    "6f1c0e2a-1111-2222-3333-444455556666,STAFF-IPAD-04,2025-09-01 08:00:00.0000000,"
    "2026-11-25 07:45:12.1234567,17.6,F9FXK2LMN0P1,Apple,iPad Air (5th generation),"
    "Noncompliant,Intune,True,iPadOS\n"
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def by_name(store: Store) -> dict[str, inventory.Device]:
    return {d.hostname: d for d in inventory.list_devices(store, T0, stale_days=7)}


def test_the_documented_columns_make_devices_from_mdm_with_their_compliance(
    store: Store,
) -> None:
    done = import_mdm(store, DOCUMENTED, "tech", T0, LONDON)
    assert (done.added, done.updated, done.skipped) == (2, 0, [])
    found = by_name(store)
    ipad, book = found["Year 5 iPad 12"], found["Library Chromebook 3"]
    assert ipad.from_mdm and book.from_mdm
    assert (ipad.os_name, ipad.os_version, ipad.serial) == ("iPadOS", "17.5.1", "DMPXK1A2B3C4")
    assert ipad.compliant and ipad.last_report_at == dt.datetime(
        2026, 11, 24, 15, 10, tzinfo=dt.UTC
    )
    assert {r["id"]: r["status"] for r in ipad.results} == {
        "disk_encryption": "pass",
        "screen_lock": "pass",
        "mdm_compliance": "pass",
    }
    assert all(r["reason"].startswith("from MDM") for r in book.results)
    assert not book.compliant  # no passcode; the MDM gave no verdict, so none is judged
    assert book.stale is False and inventory.failing(book) == ["screen_lock"]


def test_importing_again_updates_by_serial_and_keeps_each_sighting_once(store: Store) -> None:
    import_mdm(store, DOCUMENTED, "tech", T0, LONDON)
    again = import_mdm(store, DOCUMENTED, "tech", T0, LONDON)
    assert (again.added, again.updated) == (0, 2)
    later = DOCUMENTED.replace("2026-11-24 15:10,yes,yes,yes", "2026-11-25 08:30,no,yes,no")
    import_mdm(store, later, "tech", T0, LONDON)
    ipad = by_name(store)["Year 5 iPad 12"]
    assert not ipad.compliant and len(by_name(store)) == 2
    with store.connect() as conn:
        kept = conn.execute(
            sa.select(device_reports.c.compliant, device_reports.c.source)
            .where(device_reports.c.device_id == ipad.device_id)
            .order_by(device_reports.c.generated_at)
        ).all()
        actions = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.detail).where(
                audit_log.c.action == "device.mdm_import"
            )
        ).all()
    assert [tuple(r) for r in kept] == [(True, "mdm"), (False, "mdm")]
    assert [a.detail["added"] for a in actions] == [2, 0, 0] and actions[0].actor == "tech"


def test_intunes_export_is_read_through_its_column_names(store: Store) -> None:
    import_mdm(store, INTUNE, "tech", T0, LONDON)
    ipad = by_name(store)["STAFF-IPAD-04"]
    assert ipad.from_mdm and ipad.serial == "F9FXK2LMN0P1" and not ipad.compliant
    statuses = {r["id"]: r["status"] for r in ipad.results}
    assert statuses == {
        "disk_encryption": "pass",
        "screen_lock": "unknown",  # Intune's export has no passcode column
        "mdm_compliance": "fail",
    }


def test_mdm_devices_can_never_act_as_enrolled_agents(store: Store) -> None:
    import_mdm(store, DOCUMENTED, "tech", T0, LONDON)
    ipad = by_name(store)["Year 5 iPad 12"]
    for token in (f"{ipad.device_id}.", f"{ipad.device_id}.anything", ipad.device_id + "."):
        assert enrolment.check_token(store, token) == enrolment.TokenCheck(None)
    with pytest.raises(enrolment.NoSuchDevice, match="known from the MDM only"):
        enrolment.enrol(store, SECRET, SECRET.encode(), "x", T0, device_id=ipad.device_id)
    enrolment.revoke(store, ipad.device_id, "tech", "lost", T0)
    with pytest.raises(enrolment.NoSuchDevice, match="known from the MDM only"):
        enrolment.enrol(store, SECRET, SECRET.encode(), "x", T0, device_id=ipad.device_id)


def test_a_serial_an_agent_reports_for_is_skipped_not_doubled(store: Store) -> None:
    agent_id, _ = enrolment.enrol(store, SECRET, SECRET.encode(), "Year 5 iPad 12", T0)
    from_agent = DOCUMENTED.splitlines()[1].split(",")[1]
    with store.begin() as conn:
        conn.execute(
            sa.text("UPDATE devices SET serial = :s WHERE device_id = :d"),
            {"s": from_agent, "d": agent_id},
        )
    done = import_mdm(store, DOCUMENTED, "tech", T0, LONDON)
    assert done.added == 1 and done.skipped[0].startswith("line 2: DMPXK1A2B3C4 is Year 5 iPad")
    assert not by_name(store)["Year 5 iPad 12"].from_mdm


def test_a_bad_line_refuses_the_whole_export(store: Store) -> None:
    bad = DOCUMENTED + (
        "Hall iPad,SN9,iPad,iPadOS,17,yesterday,yes,yes,yes\n"  # line 4
        "Hall iPad 2,DMPXK1A2B3C4,iPad,iPadOS,17,2026-11-24 10:00,maybe,yes,yes\n"  # line 5
        ",SN10,iPad,iPadOS,17,2026-11-24 10:00,yes,yes,yes\n"  # line 6
    )
    with pytest.raises(ImportRefused) as refused:
        import_mdm(store, bad, "tech", T0, LONDON)
    assert refused.value.problems == [
        "line 4: last_seen 'yesterday' is not a date and time",
        "line 5: serial 'DMPXK1A2B3C4' is also on line 2",
        "line 6: name and serial are both needed",
    ]
    assert by_name(store) == {}
    with pytest.raises(ImportRefused, match="line 1: the header has no serial, last_seen"):
        import_mdm(store, "name,model\nx,y\n", "tech", T0, LONDON)


def test_the_cli_imports_an_export_and_lists_the_devices_as_from_mdm(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = tmp_path / "intune.csv"
    export.write_text("\ufeff" + INTUNE)
    common = ["--policy", str(watched_policy(tmp_path)), "--var", str(tmp_path / "v")]
    common += ["--dsn", db_url]
    assert schoolgate(["devices", "import-mdm", str(export), "--as", "tech", *common]) == 0
    assert "1 devices added and 0 updated" in capsys.readouterr().out
    assert schoolgate(["devices", "list", *common]) == 0
    # Last seen by the MDM on 25 November 2026: stale by the time the CLI runs.
    assert "STAFF-IPAD-04                  stale (MDM)  " in capsys.readouterr().out
    store = Store.open(db_url)
    ipad_id = inventory.list_devices(store, T0, 7)[0].device_id
    store.dispose()
    assert schoolgate(["devices", "show", ipad_id, *common]) == 0
    assert "(from MDM: no agent, as the school" in capsys.readouterr().out
    export.write_text("name,serial\nx,y\n")
    assert schoolgate(["devices", "import-mdm", str(export), "--as", "tech", *common]) == 1
    assert "nothing was imported" in capsys.readouterr().err


def test_the_mdms_compliant_with_a_check_not_known_is_not_a_pass(store: Store) -> None:
    """Intune's "Compliant" with no passcode column: the governors' figures count every check,
    so a device with its screen lock not known can't have met them all (found when the term
    report said "met every check all term" and "screen lock: 0 met it" for the same iPad)."""
    export = (
        "name,serial,model,os,os_version,last_seen,encrypted,passcode,compliant\n"
        "Staff iPad 4,F9FXK2LMN0P1,iPad Air,iPadOS,17.6,2026-11-24 15:10,yes,,yes\n"
    )
    import_mdm(store, export, "tech", T0, LONDON)
    ipad = by_name(store)["Staff iPad 4"]
    assert {r["id"]: r["status"] for r in ipad.results} == {
        "disk_encryption": "pass",
        "screen_lock": "unknown",
        "mdm_compliance": "pass",
    }
    assert not ipad.compliant and inventory.failing(ipad) == ["screen_lock"]
