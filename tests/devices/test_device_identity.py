"""Transparent-mode identity: a fresh device report's signed-in user and IP
change the filtering decision for traffic from that IP (no proxy sign-in)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.report import CheckResult, DeviceReport
from proxy_addons.devices.enrolment import enrol, revoke
from proxy_addons.devices.identity import REFRESH_SECONDS, DeviceAt, devices_by_ip, users_by_ip
from proxy_addons.devices.reports import record_report
from proxy_addons.store import Store, store_url
from tests.conftest import Upstream, access_log, copy_policy, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status


def _report(device_id: str, user: str, ip: str, at: datetime) -> DeviceReport:
    return DeviceReport(
        device_id=device_id,
        hostname="suite-pc-07",
        os_name="linux",
        os_version="12",
        agent_version="0.1.0",
        generated_at=at,
        results=(CheckResult("disk_encryption", "pass", "root is on LUKS"),),
        user=user,
        ips=(ip,),
    )


def test_a_fresh_report_attributes_the_ip_to_its_user(tmp_path: Path, upstream: Upstream) -> None:
    policy = copy_policy(tmp_path)
    (policy.parent / "enrol.secret").write_text("s3cret-enrol")
    policy.write_text(
        policy.read_text()
        + "\ndevices:\n  enrolment_secret_file: enrol.secret\n  identity_minutes: 30\n"
    )
    gw = start_mitmdump(policy, tmp_path / "var", upstream)
    try:
        # Unknown client: the default (early_years) blocks games.
        assert body_and_status(gw.curl("http://games.test/"))[1] == 403
        store = Store.open(store_url(tmp_path / "var"))
        now = datetime.now(UTC)
        device_id, _token = enrol(store, "s3cret-enrol", b"s3cret-enrol", "suite-pc-07", now)
        # A report naming a staff user is not taken: a device's word never makes staff.
        start = now - timedelta(minutes=5)
        for i, claimed in enumerate(("TEACHER",)):  # more spellings: the test below
            report = _report(device_id, claimed, "127.0.0.1", start + timedelta(seconds=i))
            record_report(store, report, now, source="127.0.0.1")
            time.sleep(REFRESH_SECONDS + 0.5)  # the gateway reads reports this often
            assert body_and_status(gw.curl("http://games.test/"))[1] == 403, claimed
        report = _report(device_id, "pupil", "127.0.0.1", start + timedelta(seconds=9))
        record_report(store, report, now, source="127.0.0.1")
        # pupil is in ks2, which allows games (early years blocks them).
        deadline = time.monotonic() + 15
        while body_and_status(gw.curl("http://games.test/"))[1] != 200:
            assert time.monotonic() < deadline, "the device report was not used"
            time.sleep(0.2)
        assert body_and_status(gw.curl("http://adult.test/"))[1] == 403  # still ks2 rules
        logged = access_log(tmp_path / "var", lambda rs: any(r.get("user") == "pupil" for r in rs))
        names = {r.get("user") for r in logged}  # the writer is asynchronous: wait for pupil
        assert "pupil" in names and "TEACHER" not in names
        # Every record from the device's address names the device, whoever signed in.
        pupils = [r for r in logged if r.get("user") == "pupil"]
        assert {(r["device_id"], r["device_name"]) for r in pupils} == {(device_id, "suite-pc-07")}
        store.dispose()
    finally:
        gw.stop()


def test_only_fresh_reports_count_and_the_newest_wins(tmp_path: Path) -> None:
    store = Store.open(store_url(tmp_path))
    now = datetime.now(UTC)
    old_id, _ = enrol(store, "x", b"x", "old-laptop", now)
    new_id, _ = enrol(store, "x", b"x", "new-laptop", now)
    at = "10.10.0.5"
    record_report(store, _report(old_id, "pupil", at, now - timedelta(minutes=45)), now, source=at)
    assert users_by_ip(store, now, 30) == {}  # older than identity_minutes
    record_report(store, _report(old_id, "pupil", at, now - timedelta(minutes=5)), now, source=at)
    record_report(store, _report(new_id, "teacher", at, now - timedelta(minutes=1)), now, source=at)
    assert users_by_ip(store, now, 30) == {"10.10.0.5": "teacher"}
    store.dispose()


def test_a_report_never_names_a_staff_user(tmp_path: Path) -> None:
    """With the policy, users it puts in a staff profile are not taken from reports."""
    from proxy_addons.core.policy.load import load_policy

    policy = load_policy(copy_policy(tmp_path))
    store = Store.open(store_url(tmp_path))
    now = datetime.now(UTC)
    ids = [enrol(store, "x", b"x", f"pc-{i}", now)[0] for i in range(4)]
    for device_id, (user, ip) in zip(
        ids,
        [
            ("teacher", "10.9.0.1"),
            ("Dsl", "10.9.0.2"),
            ("pupil", "10.9.0.3"),
            ("visitor", "10.9.0.4"),
        ],
        strict=True,
    ):
        record_report(store, _report(device_id, user, ip, now), now, source=ip)
    assert users_by_ip(store, now, 30, policy) == {"10.9.0.3": "pupil", "10.9.0.4": "visitor"}
    assert len(users_by_ip(store, now, 30)) == 4  # without a policy: as reported
    store.dispose()


def test_the_device_at_an_address_is_known_from_a_fresh_report_whoever_signed_in(
    tmp_path: Path,
) -> None:
    """For the access log's device_id and device_name: a fresh report names its device at
    the address it came from, with or without a user; an old or revoked one does not."""
    store = Store.open(store_url(tmp_path))
    now = datetime.now(UTC)
    ids = {
        name: enrol(store, "x", b"x", name, now)[0] for name in ("lab-1", "lab-2", "old", "gone")
    }
    reports = [
        ("lab-1", "pupil", "10.9.0.1", now - timedelta(minutes=1)),
        ("lab-2", "", "10.9.0.2", now - timedelta(minutes=2)),  # nobody signed in
        ("old", "pupil2", "10.9.0.3", now - timedelta(minutes=45)),
        ("gone", "pupil3", "10.9.0.4", now - timedelta(minutes=1)),
    ]
    for name, user, ip, at in reports:
        report = replace(_report(ids[name], user, ip, at), hostname=name)
        record_report(store, report, now, source=ip)
    revoke(store, ids["gone"], "it.support", "stolen", now)
    assert devices_by_ip(store, now, 30) == {
        "10.9.0.1": DeviceAt(ids["lab-1"], "lab-1"),
        "10.9.0.2": DeviceAt(ids["lab-2"], "lab-2"),
    }
    store.dispose()
