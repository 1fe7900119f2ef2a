"""The asset log on real stores: one device set (audited), a CSV applied whole, a bad or
unknown row refusing the whole file with its line number, and the CLI's import-allocation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.cli.main import main as schoolgate
from proxy_addons.devices import enrolment, inventory
from proxy_addons.devices.asset_log import (
    Allocation,
    ImportRefused,
    import_allocation,
    set_allocation,
)
from proxy_addons.store import Store
from proxy_addons.store.schema import audit_log, devices
from tests.devices.test_device_api import SECRET, T0
from tests.devices.test_device_watch import watched_policy
from tests.pg import db_url  # noqa: F401  (a fixture)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def enrol(store: Store, hostname: str, serial: str | None = None) -> str:
    device_id, _ = enrolment.enrol(store, SECRET, SECRET.encode(), hostname, T0)
    if serial:
        with store.begin() as conn:
            conn.execute(
                devices.update().where(devices.c.device_id == device_id).values(serial=serial)
            )
    return device_id


def allocation(store: Store, device_id: str) -> Allocation:
    found = inventory.get_device(store, device_id, T0, 7)
    assert found is not None
    return Allocation(found.allocated_to, found.asset_tag, found.location)


def audited(store: Store) -> list[tuple[str, str, str, dict[str, object]]]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "device.allocation")
        ).all()
    return [(r.actor, r.subject, r.detail["via"], r.detail["changed"]) for r in rows]


def test_setting_one_device_is_audited_and_unchanged_values_are_not(store: Store) -> None:
    pc = enrol(store, "lab-pc-07")
    given = Allocation("Ms A Khan", "MIL-0042", "Science lab 2")
    assert set_allocation(store, pc, given, "tech", T0) is True
    assert allocation(store, pc) == given
    assert set_allocation(store, pc, given, "tech", T0) is False
    moved = dataclasses.replace(given, location="Library")
    assert set_allocation(store, pc, moved, "tech", T0) is True
    assert audited(store)[-1] == (
        "tech",
        pc,
        "web",
        {"location": {"from": "Science lab 2", "to": "Library"}},
    )
    assert len(audited(store)) == 2
    with pytest.raises(KeyError):
        set_allocation(store, "dev-none", given, "tech", T0)


def test_a_csv_by_hostname_or_serial_is_applied_and_absent_columns_left_alone(
    store: Store,
) -> None:
    lab = enrol(store, "lab-pc-07", serial="SN-LAB-7")
    office = enrol(store, "office-pc")
    set_allocation(store, office, Allocation(location="Office"), "tech", T0)
    text = "hostname,allocated_to,asset_tag\nlab-pc-07,Ms A Khan,MIL-0042\noffice-pc,,MIL-0001\n"
    done = import_allocation(store, text, "tech", T0)
    assert (done.rows, done.changed) == (2, 2)
    assert allocation(store, lab) == Allocation("Ms A Khan", "MIL-0042", None)
    assert allocation(store, office) == Allocation(None, "MIL-0001", "Office")  # kept
    by_serial = "serial,location\nSN-LAB-7,Science lab 2\n"
    assert import_allocation(store, by_serial, "tech", T0).changed == 1
    assert allocation(store, lab).location == "Science lab 2"
    assert [(a[1], a[2]) for a in audited(store)][-3:] == [
        (lab, "import"),
        (office, "import"),
        (lab, "import"),
    ]


def test_a_bad_or_unknown_row_refuses_the_whole_file_with_its_line(store: Store) -> None:
    lab = enrol(store, "lab-pc-07")
    enrol(store, "twin")
    enrol(store, "twin")
    text = (
        "hostname,allocated_to\n"
        "lab-pc-07,Ms A Khan\n"  # line 2: good, but must not be applied
        "no-such-pc,Mr B\n"  # line 3
        "twin,Mr C\n"  # line 4: two devices have that name
        f"lab-pc-07,{'x' * 300}\n"  # line 5: too long
        ",Mr D\n"  # line 6
    )
    with pytest.raises(ImportRefused) as refused:
        import_allocation(store, text, "tech", T0)
    assert refused.value.problems == [
        "line 3: no device has hostname 'no-such-pc'",
        "line 4: 2 devices have hostname 'twin'",
        "line 5: allocated_to should be one line of at most 200 characters",
        "line 6: no hostname",
    ]
    assert allocation(store, lab) == Allocation()
    assert audited(store) == []
    twice = "hostname,location\nlab-pc-07,A\nlab-pc-07,B\n"
    with pytest.raises(ImportRefused, match="line 3: the same device as line 2"):
        import_allocation(store, twice, "tech", T0)
    with pytest.raises(ImportRefused, match="line 1: the header needs one of device_id"):
        import_allocation(store, "name,owner\nlab-pc-07,x\n", "tech", T0)


def test_the_cli_imports_and_reports_bad_lines(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store.open(db_url)
    lab = enrol(store, "lab-pc-07")
    common = ["--policy", str(watched_policy(tmp_path)), "--var", str(tmp_path / "v")]
    common += ["--dsn", db_url, "--as", "tech"]
    good = tmp_path / "good.csv"
    good.write_text(f"\ufeffdevice_id,allocated_to,asset_tag,location\n{lab},Ms A Khan,T1,Lab\n")
    assert schoolgate(["devices", "import-allocation", str(good), *common]) == 0
    assert "1 devices in the file, 1 changed" in capsys.readouterr().out
    assert allocation(store, lab) == Allocation("Ms A Khan", "T1", "Lab")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"device_id,location\n{lab},Hall\ndev-none,Hall\n")
    assert schoolgate(["devices", "import-allocation", str(bad), *common]) == 1
    err = capsys.readouterr().err
    assert "bad.csv: line 3: no device has device_id 'dev-none'" in err
    assert "nothing was imported" in err
    assert allocation(store, lab).location == "Lab"
    assert schoolgate(["devices", "export", *common[:-2]]) == 0
    assert "Ms A Khan,T1,Lab,agent" in capsys.readouterr().out
    assert schoolgate(["devices", "list", *common[:-2]]) == 0
    listed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(lab)]
    assert listed[0].endswith("  T1 Ms A Khan")  # the asset tag, then to whom
    store.dispose()
