"""Device watch on real stores and a real gateway: OS end of life, device alerts, gauges."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from agent.report import CheckResult, DeviceReport
from proxy_addons.alerts.events import DEVICE_NONCOMPLIANT, DEVICE_STALE
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import inventory
from proxy_addons.devices.watch import StaleSweep, load_eol, os_verdict, with_eol
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alert_outbox
from proxy_addons.web.app import create_device_api
from tests.conftest import ROOT, Upstream, copy_policy, free_port, start_mitmdump, wait_for_port
from tests.devices.test_device_api import SECRET, T0, Clock, report
from tests.pg import db_url  # noqa: F401  (a fixture)

EOL = load_eol(ROOT / "policies" / "os-eol.yaml")
USER = "jsmith"  # the signed-in user in tests.devices.test_device_api.report


def watched_policy(tmp: Path, stale_days: int = 7) -> Path:
    """The test policy with a syslog channel (technical alerts), enrolment and the EOL table."""
    path = copy_policy(tmp)
    (path.parent / "enrol.secret").write_text(SECRET + "\n")
    shutil.copy(ROOT / "policies" / "os-eol.yaml", path.parent / "os-eol.yaml")
    text = path.read_text().replace(
        "notifications:\n",
        "notifications:\n  syslog: {host: 127.0.0.1, port: 9, protocol: udp}\n",
        1,
    )
    text += (
        f"\ndevices:\n  enrolment_secret_file: enrol.secret\n  stale_days: {stale_days}\n"
        "  eol_file: os-eol.yaml\n"
    )
    path.write_text(text)
    return path


def alerts(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(alert_outbox).order_by(alert_outbox.c.id)).all()
    return [{"kind": r.kind, "audience": r.audience, "event": r.event} for r in rows]


def device_report(os_name: str, os_version: str, os_release: str | None) -> DeviceReport:
    unknown = CheckResult("os_supported", "unknown", "decided on the gateway")
    return DeviceReport(
        "dev-1", "lab-pc", os_name, os_version, "0.1.0", T0, (unknown,), os_release=os_release
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def gateway_metrics(policy_path: Path, var: Path, upstream: Upstream) -> str:
    """/metrics of a real gateway started on the store in `var` (the store-derived gauges
    are computed from it at start), stopped afterwards."""
    port = free_port()
    gw = start_mitmdump(
        policy_path, var, upstream, extra=["--set", f"schoolgate_metrics_port={port}"]
    )
    try:
        wait_for_port(port, gw.process, gw.log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    finally:
        gw.stop()


# -- end of life -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_name", "version", "release", "status"),
    [
        ("linux", "24.04", "ubuntu 24.04", "pass"),
        ("linux", "20.04", "ubuntu 20.04", "fail"),
        ("linux", "12", "debian 12", "pass"),
        ("linux", "40", "fedora 40", "fail"),
        ("macos", "15.1.1", None, "pass"),
        ("macos", "13.7", "macos 13.7", "fail"),
        ("windows", "10.0.19045", "windows 10.0.19045", "fail"),
        ("windows", "10.0.26100", "windows 10.0.26100", "pass"),
        ("linux", "99.04", "ubuntu 99.04", "unknown"),  # not in the table: never compliant
        ("linux", "24.04", None, "unknown"),  # a Linux report without its distribution
    ],
)
def test_the_gateway_decides_whether_the_os_is_still_supported(
    os_name: str, version: str, release: str | None, status: str
) -> None:
    verdict = os_verdict(EOL, device_report(os_name, version, release), T0.date())
    assert verdict.status == status, verdict.reason
    judged = with_eol(device_report(os_name, version, release), EOL, T0.date())
    assert [r.status for r in judged.results] == [status]
    assert judged.compliant is (status == "pass")


def test_the_verdict_is_stored_and_compliance_follows_it(store: Store, tmp_path: Path) -> None:
    policy = load_policy(watched_policy(tmp_path))
    api = create_device_api(store, lambda: policy, Clock()).test_client()
    device_id, token = _enrol(api)
    unknown = {"id": "os_supported", "status": "unknown", "reason": "no EOL table here"}
    answer = api.post(
        "/api/v1/report",
        json=report(device_id, T0, os_release="ubuntu 24.04", results=[unknown]),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 202 and answer.json is not None
    assert (answer.json["accepted"], answer.json["compliant"]) == (True, True)
    # The report speaks for the address it came from only (the test client's).
    assert answer.json["address"] == "127.0.0.1" and answer.json["ignored_ips"] == ["10.1.2.3"]
    device = inventory.get_device(store, device_id, T0, 7)
    assert device is not None and device.compliant
    assert device.results[0]["evidence"]["eol"] == "2029-04-30"


# -- alerts ----------------------------------------------------------------------------------


def _enrol(api: Any, hostname: str = "lab-pc-07") -> tuple[str, str]:
    body = api.post("/api/v1/enrol", json={"secret": SECRET, "hostname": hostname}).json
    return body["device_id"], body["token"]


def test_a_non_compliant_report_raises_one_technical_alert_without_the_user(
    store: Store, tmp_path: Path
) -> None:
    policy = load_policy(watched_policy(tmp_path))
    clock = Clock()
    api = create_device_api(store, lambda: policy, clock).test_client()
    device_id, token = _enrol(api)
    failing = [
        {"id": "disk_encryption", "status": "fail", "reason": "no LUKS"},
        {"id": "firewall", "status": "pass", "reason": "nftables has rules"},
    ]
    for minutes in (0, 5):  # the same failure reported again is not a new alert
        clock.now = T0 + dt.timedelta(minutes=minutes)
        answer = api.post(
            "/api/v1/report",
            json=report(device_id, clock.now, os_release="ubuntu 24.04", results=failing),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 202
    raised = alerts(store)
    assert [(a["kind"], a["audience"]) for a in raised] == [(DEVICE_NONCOMPLIANT, "technical")]
    fields = raised[0]["event"]["fields"]
    assert fields["hostname"] == "lab-pc-07" and fields["device_id"] == device_id
    assert fields["checks"] == "disk_encryption"
    assert USER not in json.dumps(raised[0]["event"])


def test_a_stale_device_alerts_once_until_it_reports_again(store: Store, tmp_path: Path) -> None:
    policy = load_policy(watched_policy(tmp_path, stale_days=7))
    clock = Clock()
    api = create_device_api(store, lambda: policy, clock).test_client()
    device_id, token = _enrol(api)
    _enrol(api, "never-reported")  # enrolled just now: given stale_days to send a first report
    ok = [{"id": "os_supported", "status": "unknown", "reason": "gateway decides"}]
    post = api.post(
        "/api/v1/report",
        json=report(device_id, T0, os_release="ubuntu 24.04", results=ok),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert post.status_code == 202
    sweep = StaleSweep(store, lambda: policy, clock=clock)
    assert sweep.sweep() == 0
    clock.now = T0 + dt.timedelta(days=8)
    assert sweep.sweep() == 2  # the silent device, and the one that never reported
    assert sweep.sweep() == 0
    stale = [a for a in alerts(store) if a["kind"] == DEVICE_STALE]
    assert len(stale) == 2
    assert {a["event"]["fields"]["hostname"] for a in stale} == {"lab-pc-07", "never-reported"}
    assert all(USER not in json.dumps(a["event"]) for a in stale)


# -- metrics ---------------------------------------------------------------------------------


def test_device_gauges_through_the_gateway(tmp_path: Path, upstream: Upstream) -> None:
    policy_path = watched_policy(tmp_path)
    policy: Policy = load_policy(policy_path)
    var = tmp_path / "var"
    var.mkdir()
    store = Store.open(store_url(var, None))
    now = dt.datetime.now(dt.UTC)
    api = create_device_api(store, lambda: policy, lambda: now).test_client()
    good = [{"id": "firewall", "status": "pass", "reason": "on"}]
    bad = [{"id": "firewall", "status": "fail", "reason": "off"}]
    for hostname, results in (("good-pc", good), ("bad-pc", bad)):
        device_id, token = _enrol(api, hostname)
        answer = api.post(
            "/api/v1/report",
            json=report(device_id, now, os_release="ubuntu 24.04", results=results),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 202
    _enrol(api, "silent-pc")
    store.dispose()
    text = gateway_metrics(policy_path, var, upstream)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("schoolgate_device")
    }
    assert samples[("schoolgate_devices", (("compliance", "compliant"),))] == 1
    assert samples[("schoolgate_devices", (("compliance", "non_compliant"),))] == 1
    assert samples[("schoolgate_devices", (("compliance", "stale"),))] == 1
    checks = {k[1]: v for k, v in samples.items() if k[0] == "schoolgate_device_checks"}
    assert checks[(("check", "firewall"), ("status", "pass"))] == 1
    assert checks[(("check", "firewall"), ("status", "fail"))] == 1
    assert checks[(("check", "os_supported"), ("status", "pass"))] == 2
    assert all(h not in text for h in ("good-pc", "bad-pc", "silent-pc", USER))


def test_the_eol_file_is_optional_but_must_exist_when_named(tmp_path: Path) -> None:
    assert load_policy(copy_policy(tmp_path / "a")).devices.eol_file is None
    path = watched_policy(tmp_path / "b")
    (path.parent / "os-eol.yaml").unlink()
    with pytest.raises(PolicyError, match="eol_file 'os-eol.yaml' does not exist"):
        load_policy(path)
