"""Per-device tunnels on real stores: binding keys to addresses, the device API's
/api/v1/tunnel, identity by key (no report moves a tunnel address), the agent's word on its
tunnel kept, and the technical alert for a device off site without it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.report import CheckResult, DeviceReport, TunnelState
from agent.tunnel.config import new_private_key, parse_config, public_key
from proxy_addons.alerts.events import TUNNEL_DOWN
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import enrolment, tunnels
from proxy_addons.devices.identity import DeviceAt, DeviceIdentities, devices_by_ip, users_by_ip
from proxy_addons.devices.reports import record_report
from proxy_addons.devices.tunnel_watch import alert_tunnel_down
from proxy_addons.store import Store
from proxy_addons.store.schema import audit_log, devices
from proxy_addons.web.app import create_device_api
from tests.devices.test_device_api import SECRET, T0, Clock, report
from tests.devices.test_device_watch import alerts, watched_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

TUNNEL = (
    "  tunnel:\n    pool: 10.123.0.0/29\n    endpoint: gw.school.example:51820\n"
    "    passthrough: [52.112.0.0/14]\n    down_alert_minutes: 30\n"
)


def tunnel_policy(tmp: Path, extra: str = "") -> Policy:
    path = watched_policy(tmp)
    path.write_text(path.read_text() + TUNNEL + extra)
    return load_policy(path)


def said(answer: Any) -> dict[str, Any]:
    body = answer.json
    assert isinstance(body, dict)
    return body


def new_key() -> str:
    return public_key(new_private_key())


@pytest.fixture
def store(db_url: str) -> Any:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


def enrolled(store: Store, name: str = "lab-pc-07") -> tuple[str, str]:
    return enrolment.enrol(store, SECRET, SECRET.encode(), name, T0)


def test_the_policy_section_reads_and_names_what_is_wrong(tmp_path: Path) -> None:
    policy = tunnel_policy(tmp_path)
    tunnel = policy.devices.tunnel
    assert tunnel is not None
    assert tunnel.pool == ipaddress.ip_network("10.123.0.0/29")
    assert str(tunnel.gateway_address) == "10.123.0.1"
    assert (tunnel.interface, tunnel.listen_port, tunnel.fail_closed) == (
        "schoolgate-wg",
        51820,
        False,
    )
    # The pool is a client network (here already inside the private defaults).
    assert any(tunnel.pool.subnet_of(n) for n in policy.network.client_networks if n.version == 4)
    path = watched_policy(tmp_path / "bad")
    path.write_text(
        path.read_text()
        + "  tunnel:\n    pool: 8.8.8.0/24\n    endpoint: 'not a host:99999'\n"
        + "    fail_closed: yes please\n    interface: a-very-long-interface-name\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    said = str(caught.value)
    assert "pool 8.8.8.0/24 should be a private IPv4 network" in said
    assert "endpoint 'not a host:99999' should be host:port" in said
    assert "fail_closed should be true or false" in said
    assert "interface should be a name of 1 to 15" in said
    assert said.count("school.yaml, line ") == 4  # each names its line


def test_a_pool_outside_the_client_networks_is_served_too(tmp_path: Path) -> None:
    path = watched_policy(tmp_path)
    path.write_text(path.read_text() + TUNNEL + "network:\n  client_networks: [10.20.0.0/16]\n")
    network = load_policy(path).network
    assert [str(n) for n in network.client_networks] == ["10.20.0.0/16", "10.123.0.0/29"]


def test_a_pool_that_holds_a_school_network_is_refused_with_its_line(tmp_path: Path) -> None:
    """The firewall drops pool addresses arriving off the tunnel as forged: a school network
    inside the pool would get nothing through. Inside a wider client network is fine."""
    path = watched_policy(tmp_path)
    networks = "network:\n  client_networks: [10.0.0.0/8]\n  management_networks: [{}]\n"
    path.write_text(path.read_text() + TUNNEL + networks.format("10.99.0.0/24"))
    assert load_policy(path).devices.tunnel is not None
    for inside in ("10.123.0.0/29", "10.123.0.4/30"):
        path.write_text(path.read_text().rsplit("network:", 1)[0] + networks.format(inside))
        with pytest.raises(PolicyError) as caught:
            load_policy(path)
        said = str(caught.value)
        assert f"pool 10.123.0.0/29 holds the school's network {inside} " in said
        assert "(network.management_networks)" in said and "school.yaml, line " in said


def test_binding_gives_each_key_its_own_address_and_keeps_it(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy_addons.devices.tunnels")
    tunnel = tunnel_policy(tmp_path).devices.tunnel
    assert tunnel is not None
    (a, _), (b, _) = enrolled(store, "a"), enrolled(store, "b")
    key_a, key_b = new_key(), new_key()
    first = tunnels.bind(store, tunnel, a, key_a, T0, "device")
    second = tunnels.bind(store, tunnel, b, key_b, T0, "device")
    assert (first.address, second.address) == ("10.123.0.2", "10.123.0.3")  # .1: the gateway
    # The same key again: the same binding, nothing new in the audit trail or the log.
    caplog.clear()
    assert tunnels.bind(store, tunnel, a, key_a, T0, "device") == first
    assert caplog.records == []
    # A new key (rotation) keeps the address; another device's key is refused.
    rotated = tunnels.bind(store, tunnel, a, new_key(), T0, "device")
    assert rotated.address == first.address and rotated.public_key != key_a
    with pytest.raises(tunnels.TunnelError, match="another device's"):
        tunnels.bind(store, tunnel, a, key_b, T0, "device")
    with pytest.raises(tunnels.TunnelError, match="WireGuard public key"):
        tunnels.bind(store, tunnel, a, "not-a-key", T0, "device")
    with store.connect() as conn:
        actions = [
            (r.action, r.detail.get("new_key"))
            for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))
            if r.action == "device.tunnel_bound"
        ]
    assert actions == [("device.tunnel_bound", False)] * 2 + [("device.tunnel_bound", True)]


def test_revoking_frees_the_address_and_a_full_pool_says_so(store: Store, tmp_path: Path) -> None:
    tunnel = tunnel_policy(tmp_path).devices.tunnel
    assert tunnel is not None
    ids = [enrolled(store, f"pc-{i}")[0] for i in range(6)]
    given = [tunnels.bind(store, tunnel, d, new_key(), T0, "device").address for d in ids[:5]]
    assert given == [f"10.123.0.{n}" for n in range(2, 7)]  # a /29: .2 to .6 for devices
    with pytest.raises(tunnels.TunnelError, match="pool 10.123.0.0/29 is full"):
        tunnels.bind(store, tunnel, ids[5], new_key(), T0, "device")
    enrolment.revoke(store, ids[1], "it.support", "lost on a trip", T0)
    assert "10.123.0.3" not in {b.address for b in tunnels.bindings(store)}
    with pytest.raises(tunnels.TunnelError, match="revoked"):
        tunnels.bind(store, tunnel, ids[1], new_key(), T0, "device")
    assert tunnels.bind(store, tunnel, ids[5], new_key(), T0, "device").address == "10.123.0.3"
    with store.connect() as conn:
        revoked = conn.execute(
            sa.select(audit_log.c.detail).where(audit_log.c.action == "device.revoked")
        ).scalar_one()
    assert revoked["tunnel_address"] == "10.123.0.3"


def test_everything_goes_through_the_tunnel_but_the_passthrough_networks(
    tmp_path: Path,
) -> None:
    tunnel = tunnel_policy(tmp_path).devices.tunnel
    assert tunnel is not None
    allowed = tunnels.allowed_ips(tunnel)
    assert allowed[-1] == "::/0"
    v4 = [ipaddress.ip_network(n) for n in allowed[:-1]]
    hole = ipaddress.ip_network("52.112.0.0/14")
    assert not any(n.overlaps(hole) for n in v4)
    assert sum(n.num_addresses for n in v4) == 2**32 - hole.num_addresses
    for inside in ("52.111.255.255", "52.116.0.0", "8.8.8.8", "10.123.0.1"):
        assert any(ipaddress.ip_address(inside) in n for n in v4), inside


def test_the_device_api_hands_out_the_tunnel(store: Store, tmp_path: Path) -> None:
    policy = tunnel_policy(tmp_path)
    var = tmp_path / "var"
    api = create_device_api(store, lambda: policy, Clock(), var=var).test_client()
    device_id, token = enrolled(store)
    auth = {"Authorization": f"Bearer {token}"}
    key = new_key()
    assert api.post("/api/v1/tunnel", json={"public_key": key}).status_code == 401
    # Before `schoolgate tunnel up` has made the gateway's key: try later.
    answer = api.post("/api/v1/tunnel", json={"public_key": key}, headers=auth)
    assert answer.status_code == 503 and "not up yet" in said(answer)["error"]
    private, public = tunnels.key_files(policy.devices.tunnel, var)  # type: ignore[arg-type]
    public.parent.mkdir(parents=True)
    gateway_key = new_key()
    public.write_text(gateway_key + "\n")
    answer = api.post("/api/v1/tunnel", json={"public_key": "abc"}, headers=auth)
    assert answer.status_code == 400 and said(answer)["field"] == "public_key"
    answer = api.post("/api/v1/tunnel", json={"public_key": key}, headers=auth)
    assert answer.status_code == 200, answer.json
    config = parse_config(said(answer)["tunnel"])
    assert (config.address, config.gateway_address) == ("10.123.0.2", "10.123.0.1")
    assert config.gateway_public_key == gateway_key and config.endpoint == "gw.school.example:51820"
    assert config.allowed_ips == tunnels.allowed_ips(policy.devices.tunnel)  # type: ignore[arg-type]
    # Another device may not take that key.
    _, other = enrolled(store, "other")
    answer = api.post(
        "/api/v1/tunnel", json={"public_key": key}, headers={"Authorization": f"Bearer {other}"}
    )
    assert answer.status_code == 409
    # No tunnel in the policy: said plainly.
    plain = load_policy(watched_policy(tmp_path / "plain"))
    api = create_device_api(store, lambda: plain, Clock(), var=var).test_client()
    answer = api.post("/api/v1/tunnel", json={"public_key": key}, headers=auth)
    assert answer.status_code == 404 and "offers no tunnels" in said(answer)["error"]


def _report(device_id: str, user: str, ips: tuple[str, ...], at: dt.datetime) -> DeviceReport:
    ok = (CheckResult("disk_encryption", "pass", "LUKS"),)
    return DeviceReport(device_id, "pc", "linux", "12", "0.1", at, ok, user=user, ips=ips)


def test_a_tunnel_address_is_its_key_holders_whatever_reports_say(
    store: Store, tmp_path: Path
) -> None:
    policy = tunnel_policy(tmp_path)
    tunnel = policy.devices.tunnel
    assert tunnel is not None
    (a, _), (b, _) = enrolled(store, "laptop-a"), enrolled(store, "laptop-b")
    bound_a = tunnels.bind(store, tunnel, a, new_key(), T0, "device")
    tunnels.bind(store, tunnel, b, new_key(), T0, "device")
    now = T0 + dt.timedelta(minutes=1)
    # A reports through its tunnel; B reports from the LAN, listing A's tunnel address, and
    # from A's tunnel address as a forged source (it can't send from there, but say it did).
    record_report(store, _report(a, "pupil", (bound_a.address,), T0), now, source=bound_a.address)
    forged = _report(b, "visitor", ("10.1.2.9", bound_a.address), T0)
    record_report(store, forged, now, source=bound_a.address)
    users = users_by_ip(store, now, 30, policy)
    assert users[bound_a.address] == "pupil"
    assert devices_by_ip(store, now, 30, policy)[bound_a.address] == DeviceAt(a, "pc")
    # B is known at its own tunnel address (by key), with its user; never at A's.
    assert users["10.123.0.3"] == "visitor"
    assert devices_by_ip(store, now, 30, policy)["10.123.0.3"] == DeviceAt(b, "pc")
    # A revoked device's address names no one at once.
    enrolment.revoke(store, a, "it.support", "stolen", now)
    assert bound_a.address not in users_by_ip(store, now, 30, policy)
    assert bound_a.address not in devices_by_ip(store, now, 30, policy)


def test_on_site_identity_is_by_key_alone_for_devices_with_a_tunnel(
    store: Store, tmp_path: Path
) -> None:
    policy = tunnel_policy(tmp_path, "    on_site: true\n")
    tunnel = policy.devices.tunnel
    assert tunnel is not None and tunnel.on_site
    (a, _), (c, _) = enrolled(store, "with-tunnel"), enrolled(store, "without")
    tunnels.bind(store, tunnel, a, new_key(), T0, "device")
    now = T0 + dt.timedelta(minutes=1)
    record_report(store, _report(a, "pupil", ("10.1.2.3",), T0), now, source="10.1.2.3")
    record_report(store, _report(c, "visitor", ("10.1.2.4",), T0), now, source="10.1.2.4")
    users = users_by_ip(store, now, 30, policy)
    assert users == {"10.123.0.2": "pupil", "10.1.2.4": "visitor"}  # unenrolled: as before
    off_site = dataclasses.replace(
        policy,
        devices=dataclasses.replace(
            policy.devices, tunnel=dataclasses.replace(tunnel, on_site=False)
        ),
    )
    assert users_by_ip(store, now, 30, off_site)["10.1.2.3"] == "pupil"


def _down(device_id: str, since: dt.datetime, at: dt.datetime, closed: bool) -> DeviceReport:
    state = TunnelState("down", "off_site", since, None, closed, "no handshake for 40 min")
    return dataclasses.replace(_report(device_id, "pupil", (), at), tunnel=state)


def test_a_device_off_site_without_its_tunnel_raises_one_alert(
    store: Store, tmp_path: Path
) -> None:
    policy = tunnel_policy(tmp_path)
    device_id, _ = enrolled(store)
    since = T0
    early = _down(device_id, since, T0 + dt.timedelta(minutes=10), True)
    record_report(store, early, early.generated_at, source=None)
    assert not alert_tunnel_down(store, policy, early, early.generated_at)  # under 30 min
    with store.connect() as conn:
        row = conn.execute(sa.select(devices).where(devices.c.device_id == device_id)).one()
    assert row.tunnel_down_since == since and row.last_tunnel["state"] == "down"
    late = _down(device_id, since, T0 + dt.timedelta(minutes=45), True)
    assert alert_tunnel_down(store, policy, late, late.generated_at)
    assert not alert_tunnel_down(store, policy, late, late.generated_at)  # once
    raised = [a for a in alerts(store) if a["kind"] == TUNNEL_DOWN]
    assert len(raised) == 1 and raised[0]["audience"] == "technical"
    fields = raised[0]["event"]["fields"]
    assert fields["device_id"] == device_id and "blocked (fail closed)" in fields["meaning"]
    assert "pupil" not in str(raised[0]["event"])  # the device, never its user
    # Back up: remembered no more, so the next time down is news again.
    up = dataclasses.replace(
        late,
        tunnel=TunnelState("up", "off_site", late.generated_at),
        generated_at=late.generated_at,
    )
    assert not alert_tunnel_down(store, policy, up, up.generated_at)
    again = _down(device_id, T0 + dt.timedelta(hours=2), T0 + dt.timedelta(hours=3), False)
    assert alert_tunnel_down(store, policy, again, again.generated_at)
    assert len([a for a in alerts(store) if a["kind"] == TUNNEL_DOWN]) == 2


def test_the_report_api_keeps_what_the_agent_says_about_its_tunnel(
    store: Store, tmp_path: Path
) -> None:
    policy = tunnel_policy(tmp_path)
    clock = Clock(T0 + dt.timedelta(hours=1))
    api = create_device_api(store, lambda: policy, clock).test_client()
    device_id, token = enrolled(store)
    body = report(device_id, T0 + dt.timedelta(minutes=59))
    body["tunnel"] = {"state": "down", "where": "off_site", "since": T0.isoformat()}
    answer = api.post(
        "/api/v1/report",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert answer.status_code == 202, answer.json
    assert [
        a["event"]["fields"]["device_id"] for a in alerts(store) if a["kind"] == TUNNEL_DOWN
    ] == [device_id]
    body = report(device_id, T0 + dt.timedelta(minutes=59, seconds=30))
    body["tunnel"] = {"state": "sideways", "where": "off_site"}
    answer = api.post(
        "/api/v1/report",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert answer.status_code == 400 and said(answer)["field"] == "tunnel.state"


def test_a_device_bound_since_the_last_refresh_is_named_at_its_first_request(
    store: Store, tmp_path: Path
) -> None:
    policy = tunnel_policy(tmp_path)
    tunnel = policy.devices.tunnel
    assert tunnel is not None
    identities = DeviceIdentities(store, lambda: policy)
    identities.refresh()
    device_id, _ = enrolled(store, "new-laptop")
    bound = tunnels.bind(store, tunnel, device_id, new_key(), T0, "device")
    assert identities.device_at(bound.address) == DeviceAt(device_id, "new-laptop")
    # Outside the pool a miss stays a miss, and reads nothing.
    looked = identities._looked
    assert identities.device_at("10.1.2.3") is None and identities._looked == looked


def test_a_report_through_the_tunnel_keeps_nothing_of_the_pupils_home_network(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = tunnel_policy(tmp_path)
    tunnel = policy.devices.tunnel
    assert tunnel is not None
    api = create_device_api(
        store, lambda: policy, Clock(T0 + dt.timedelta(minutes=1))
    ).test_client()
    device_id, token = enrolled(store)
    bound = tunnels.bind(store, tunnel, device_id, new_key(), T0, "device")
    body = report(device_id, T0, ips=[bound.address, "192.168.1.23", "86.1.2.3"])
    caplog.set_level("INFO")
    answer = api.post(
        "/api/v1/report",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": bound.address},
    )
    assert answer.status_code == 202 and said(answer)["ignored_ips"] == []
    with store.connect() as conn:
        row = conn.execute(sa.select(devices).where(devices.c.device_id == device_id)).one()
    assert (row.last_ips, row.ignored_ips) == ([bound.address], [])
    assert "192.168.1.23" not in caplog.text and "86.1.2.3" not in caplog.text
    # From the school network, unbelieved addresses are still kept and said (a forgery).
    body = report(device_id, T0 + dt.timedelta(seconds=1), ips=["10.1.2.3", "10.1.2.99"])
    api.post(
        "/api/v1/report",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    with store.connect() as conn:
        row = conn.execute(sa.select(devices).where(devices.c.device_id == device_id)).one()
    assert row.ignored_ips == ["10.1.2.99"] and "10.1.2.99" in caplog.text
