"""Device lifecycle on real stores: remembered alerts across restarts, unknown-device alerts,
revoking a device's token and enrolling it again (audited), migration 0006 both ways."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from flask.testing import FlaskClient

from proxy_addons.alerts.events import DEVICE_NONCOMPLIANT, DEVICE_STALE, DEVICE_UNKNOWN
from proxy_addons.cli.main import main as schoolgate
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import enrolment, inventory
from proxy_addons.devices.alert_state import claim, recalled
from proxy_addons.devices.identity import users_by_ip
from proxy_addons.devices.netwatch import Sighting, record
from proxy_addons.devices.watch import StaleSweep
from proxy_addons.store import Store, alembic_config
from proxy_addons.store.schema import alert_outbox, audit_log, device_alerts, devices
from proxy_addons.web.app import create_device_api
from proxy_addons.workflow import audit
from tests.devices.test_device_api import SECRET, T0, Clock, report
from tests.devices.test_device_watch import alerts, watched_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

PHONE = "02:11:22:33:44:55"
LAPTOP_MAC = "00:11:22:33:44:55"  # the MAC in tests.devices.test_device_api.report
FAILING = [
    {"id": "disk_encryption", "status": "fail", "reason": "no LUKS"},
    {"id": "firewall", "status": "pass", "reason": "nftables has rules"},
]


class Gateway:
    """The device API and the sweep as one gateway process would have them."""

    def __init__(self, url: str, policy: Policy, clock: Clock) -> None:
        self.url = url
        self.store = Store.open(url)
        self.policy = policy
        self.clock = clock
        self.api: FlaskClient = create_device_api(self.store, lambda: policy, clock).test_client()
        self.sweep = StaleSweep(self.store, lambda: policy, clock=clock)

    def enrol(self, hostname: str = "lab-pc-07", **extra: Any) -> Any:
        headers = extra.pop("headers", {})
        return self.api.post(
            "/api/v1/enrol",
            json={"secret": SECRET, "hostname": hostname, **extra},
            headers=headers,
        )

    def post(self, token: str, device_id: str, **changes: Any) -> Any:
        changes.setdefault("os_release", "ubuntu 24.04")
        body = report(device_id, self.clock.now, **changes)
        return self.api.post(
            "/api/v1/report",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            environ_base={"REMOTE_ADDR": body["ips"][0]},  # sent from where it says it is
        )

    def restart(self) -> Gateway:
        """The same database opened afresh: nothing carried over in memory."""
        self.store.dispose()
        return Gateway(self.url, self.policy, self.clock)


@pytest.fixture
def gateway(db_url: str, tmp_path: Path) -> Any:  # noqa: F811
    gw = Gateway(db_url, load_policy(watched_policy(tmp_path)), Clock())
    yield gw
    gw.store.dispose()


def kinds(store: Store) -> list[str]:
    return [a["kind"] for a in alerts(store)]


def raised_times(store: Store, kind: str) -> int:
    """How often `kind` was raised, counting repeats the outbox folded into one row."""
    with store.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.sum(alert_outbox.c.occurrences)).where(alert_outbox.c.kind == kind)
        ).scalar()
    return int(total or 0)


# -- alerts remembered in the store ------------------------------------------------------------


def test_a_stale_device_is_not_raised_again_after_a_restart(gateway: Gateway) -> None:
    body = gateway.enrol().json
    device_id, token = body["device_id"], body["token"]
    assert gateway.post(token, device_id).status_code == 202
    gateway.clock.now = T0 + dt.timedelta(days=8)
    assert gateway.sweep.sweep() == 1
    gateway = gateway.restart()
    assert gateway.sweep.sweep() == 0  # remembered in the store, not in the old process
    assert raised_times(gateway.store, DEVICE_STALE) == 1
    assert recalled(gateway.store, DEVICE_STALE, device_id) == T0.isoformat()

    # It reports again: forgotten; silent again: raised again, once.
    assert gateway.post(token, device_id).status_code == 202
    assert gateway.sweep.sweep() == 0
    assert recalled(gateway.store, DEVICE_STALE, device_id) is None
    gateway.clock.now += dt.timedelta(days=8)
    assert gateway.restart().sweep.sweep() == 1
    assert raised_times(gateway.store, DEVICE_STALE) == 2
    gateway.store.dispose()


def test_a_non_compliant_device_is_not_raised_again_after_a_restart(gateway: Gateway) -> None:
    body = gateway.enrol().json
    device_id, token = body["device_id"], body["token"]
    assert gateway.post(token, device_id, results=FAILING).status_code == 202
    gateway = gateway.restart()
    gateway.clock.now += dt.timedelta(minutes=5)
    assert gateway.post(token, device_id, results=FAILING).status_code == 202
    assert raised_times(gateway.store, DEVICE_NONCOMPLIANT) == 1
    assert recalled(gateway.store, DEVICE_NONCOMPLIANT, device_id) == "disk_encryption"
    # Fixed, then failing again: a new alert.
    gateway.clock.now += dt.timedelta(minutes=5)
    assert gateway.post(token, device_id).status_code == 202
    assert recalled(gateway.store, DEVICE_NONCOMPLIANT, device_id) is None
    gateway.clock.now += dt.timedelta(minutes=5)
    assert gateway.post(token, device_id, results=FAILING).status_code == 202
    assert raised_times(gateway.store, DEVICE_NONCOMPLIANT) == 2  # folded in one outbox row
    gateway.store.dispose()


def test_claim_is_news_once_per_state(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        assert claim(store, "k", "dev-1", "a", T0)
        assert not claim(store, "k", "dev-1", "a", T0)
        assert claim(store, "k", "dev-1", "b", T0)
        assert claim(store, "k", "dev-2", "b", T0)
        with store.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(device_alerts)).scalar() == 2
    finally:
        store.dispose()


def test_an_unknown_device_alerts_the_it_provider_once_per_mac(gateway: Gateway) -> None:
    body = gateway.enrol().json
    assert gateway.post(body["token"], body["device_id"]).status_code == 202  # LAPTOP_MAC
    sightings = [Sighting(PHONE, "10.9.0.77", "Sams-iPhone", "dhcp")]
    sightings.append(Sighting(LAPTOP_MAC, "10.1.2.3", None, "arp"))
    for minutes in range(0, 30):  # a packet a minute: still one alert
        record(gateway.store, sightings, T0 + dt.timedelta(minutes=minutes))
        gateway.clock.now = T0 + dt.timedelta(minutes=minutes)
        gateway.sweep.sweep_unknown()
    assert gateway.restart().sweep.sweep_unknown() == 0
    raised = [a for a in alerts(gateway.store) if a["kind"] == DEVICE_UNKNOWN]
    assert len(raised) == 1 and raised[0]["audience"] == "technical"
    event = raised[0]["event"]
    # Raised after the grace period (a school device may ARP before it enrols).
    assert dt.datetime.fromisoformat(event["at"]) == T0 + dt.timedelta(minutes=10)
    assert event["fields"]["mac"] == PHONE and event["fields"]["ip"] == "10.9.0.77"
    assert event["fields"]["vendor"].startswith("randomised")
    assert "Sams-iPhone" not in json.dumps(event)  # often its owner's name
    gateway.store.dispose()


# -- revoking and enrolling again ------------------------------------------------------------


def audit_actions(store: Store) -> list[tuple[str, str, str]]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    return [(r.action, r.subject, r.actor) for r in rows]


def test_revoke_stops_the_token_at_once_and_re_enrolling_gives_a_new_one(
    gateway: Gateway,
    db_url: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = gateway.enrol().json
    device_id, old = body["device_id"], body["token"]
    assert gateway.post(old, device_id).status_code == 202
    assert users_by_ip(gateway.store, T0, 30) == {"10.1.2.3": "jsmith"}
    common = ["--policy", str(gateway.policy.path), "--var", str(tmp_path / "v"), "--dsn", db_url]
    revoke = ["devices", "revoke", device_id, "--as", "tech", "--reason", "laptop stolen"]
    assert schoolgate([*revoke, *common]) == 0
    assert "revoked" in capsys.readouterr().out

    gateway.clock.now += dt.timedelta(minutes=1)
    refused = gateway.post(old, device_id)
    assert refused.status_code == 401
    assert "revoked on" in refused.json["error"] and "enrol it again" in refused.json["error"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert enrolment.verify_token(gateway.store, old) is None
    assert schoolgate([*revoke, *common]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert schoolgate(["devices", "revoke", "dev-none", "--as", "tech", *common]) == 1
    assert schoolgate(["devices", "list", *common]) == 0
    assert "revoked" in capsys.readouterr().out
    assert schoolgate(["devices", "show", device_id, *common]) == 0
    shown = capsys.readouterr().out
    assert "compliant: no" in shown and "revoked: " in shown and "by tech" in shown
    assert schoolgate(["devices", "export", *common]) == 0
    header, row_text = capsys.readouterr().out.splitlines()
    assert header.endswith(
        ",compliant,stale,failing,revoked,allocated_to,asset_tag,location,source"
    )
    assert re.search(r",no,(yes|no),,\d{4}-\d\d-\d\dT[\d:.]+\+00:00,,,,agent$", row_text), row_text
    row = inventory.get_device(gateway.store, device_id, gateway.clock.now, 7)
    assert row is not None and row.revoked and not row.compliant
    assert users_by_ip(gateway.store, T0, 30) == {}  # its word no longer names anyone

    # A wrong secret never re-enrols; the right one gives the old id a new token.
    wrong = gateway.api.post(
        "/api/v1/enrol", json={"secret": "guess", "hostname": "x", "device_id": device_id}
    )
    assert wrong.status_code == 403
    again = gateway.enrol("lab-pc-07b", device_id=device_id)
    assert again.status_code == 201 and again.json["device_id"] == device_id
    new = again.json["token"]
    assert new != old
    gateway.clock.now += dt.timedelta(minutes=1)
    assert gateway.post(new, device_id).status_code == 202
    assert gateway.post(old, device_id).status_code == 401
    found = inventory.get_device(gateway.store, device_id, gateway.clock.now, 7)
    assert found is not None and not found.revoked and found.hostname == "lab-pc-07"

    actions = audit_actions(gateway.store)
    assert actions == [
        ("device.enrolled", device_id, f"device {device_id}"),
        ("device.revoked", device_id, "tech"),
        ("device.reenrolled", device_id, f"device {device_id}"),
    ]
    assert audit.verify(gateway.store).ok


def test_a_working_device_id_cannot_be_taken_over(gateway: Gateway) -> None:
    body = gateway.enrol().json
    device_id, token = body["device_id"], body["token"]
    taken = gateway.enrol("impostor", device_id=device_id)
    assert taken.status_code == 409 and "revoke it first" in taken.json["error"]
    assert taken.json["field"] == "device_id"
    assert gateway.enrol("x", device_id="dev-none").status_code == 404
    assert gateway.enrol("x", device_id=["not", "text"]).status_code == 400
    # With its current token, the device itself may change it.
    rotated = gateway.enrol(
        "lab-pc-07", device_id=device_id, headers={"Authorization": f"Bearer {token}"}
    )
    assert rotated.status_code == 201
    assert enrolment.verify_token(gateway.store, token) is None
    assert enrolment.verify_token(gateway.store, rotated.json["token"]) == device_id
    with gateway.store.connect() as conn:
        hashes = conn.execute(sa.select(devices.c.token_hash)).scalars().all()
    assert rotated.json["token"] not in json.dumps(hashes)


def test_migration_0006_down_and_up_keeps_devices(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        enrolment.enrol(store, SECRET, SECRET.encode(), "lab-pc-07", T0)
        config = alembic_config(db_url)
        command.downgrade(config, "0005")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("devices")}
        assert "revoked_at" not in columns
        assert "device_alerts" not in sa.inspect(store.engine).get_table_names()
        command.upgrade(config, "head")
        assert [d.hostname for d in inventory.list_devices(store, T0, 7)] == ["lab-pc-07"]
    finally:
        store.dispose()
