"""`schoolgate doctor`'s tunnel checks, against a real WireGuard interface in the lab's gateway
namespace (tests/ops/test_wireguard_interface.py), a real SQLite store and a real policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy_addons.devices import enrolment, tunnels
from proxy_addons.ops.doctor.findings import Check, Level
from proxy_addons.ops.doctor.tunnel import check_tunnel
from proxy_addons.ops.wireguard import interface
from proxy_addons.ops.wireguard.peers import PeerSync
from tests.conftest import copy_policy
from tests.gateway.test_transparent_netns import LAB_DEFINES, NFT_DIR, render_nft
from tests.ops.test_wireguard_interface import (  # noqa: F401  (lab_fixture: "lab")
    KEY_A,
    NEEDS_WIREGUARD,
    POOL,
    Lab,
    lab_fixture,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _policy(lab: Lab, endpoint: str = "localhost:51820", listen_port: int = 51820) -> Path:
    path = lab.tmp / "policy" / "school.yaml"
    if not path.exists():
        copy_policy(lab.tmp)
    text = path.read_text().split("\ndevices:\n")[0]
    path.write_text(
        text + f"\ndevices:\n  tunnel:\n    pool: {POOL}\n    endpoint: {endpoint}\n"
        f"    interface: {lab.tunnel.interface}\n    listen_port: {listen_port}\n"
    )
    return path


def found(lab: Lab, policy: Path, now: datetime = NOW) -> dict[str, Check]:
    return {c.name: c for c in check_tunnel(policy, lab.tmp, cmd=lab.cmd, now=now)}


def test_no_tunnel_in_the_policy_no_checks(tmp_path: Path) -> None:
    assert check_tunnel(copy_policy(tmp_path), tmp_path) == []


@NEEDS_WIREGUARD
def test_a_missing_or_down_interface_fails(lab: Lab) -> None:
    policy = _policy(lab)
    missing = found(lab, policy)
    assert missing["tunnel"].level is Level.FAIL and "is missing" in missing["tunnel"].message
    assert "systemctl start schoolgate-tunnel" in missing["tunnel"].fix
    assert missing["tunnel key"].level is Level.FAIL  # not made yet

    interface.bring_up(lab.tunnel, lab.tmp, lab.cmd)
    lab.cmd.run(["ip", "link", "set", "dev", lab.tunnel.interface, "down"])
    down = found(lab, policy)["tunnel"]
    assert down.level is Level.FAIL and "is down" in down.message


@NEEDS_WIREGUARD
def test_a_sound_tunnel_and_each_problem_named(lab: Lab) -> None:
    policy = _policy(lab)
    interface.bring_up(lab.tunnel, lab.tmp, lab.cmd)
    sound = found(lab, policy)
    assert {n: c.level for n, c in sound.items()} == {
        "tunnel": Level.OK,
        "tunnel key": Level.OK,
        "tunnel endpoint": Level.OK,
        "tunnel peers": Level.OK,
        "tunnel use": Level.OK,
    }, sound

    # Bound but not synced: the peers differ, named by device id; nobody has connected.
    laptop, _ = enrolment.enrol(lab.store, "s", b"s", "laptop-07", NOW)
    tunnels.bind(lab.store, lab.tunnel, laptop, KEY_A, NOW, "device")
    stale = found(lab, policy)
    assert stale["tunnel peers"].level is Level.WARN and laptop in stale["tunnel peers"].message
    # Bound today, at school, and not away yet: nothing to worry about; a day on, a worry.
    fresh = stale["tunnel use"]
    assert fresh.level is Level.OK and "1 device bound in the last day" in fresh.message
    use = found(lab, policy, now=NOW + timedelta(days=2))["tunnel use"]
    assert use.level is Level.WARN and "1 device bound, and none has connected ever" in use.message
    assert "UDP port forward to this gateway's port 51820" in use.fix
    PeerSync(lab.store, lab.tunnel, lab.cmd).sync()
    assert found(lab, policy)["tunnel peers"].level is Level.OK

    # A handshake within the day is use; one older than a day is not.
    tunnels.record_handshakes(lab.store, {KEY_A: NOW - timedelta(hours=2)})
    assert found(lab, policy)["tunnel use"].level is Level.OK
    assert found(lab, policy, now=NOW + timedelta(days=2))["tunnel use"].level is Level.WARN

    key_file = lab.tmp / "wireguard" / "gateway.key"
    key_file.chmod(0o644)
    loose = found(lab, policy)["tunnel key"]
    assert loose.level is Level.FAIL and "read by others" in loose.message
    assert loose.fix == f"chmod 600 {key_file}"
    key_file.chmod(0o600)

    moved = found(lab, _policy(lab, listen_port=51999))["tunnel"]
    assert moved.level is Level.FAIL and "the policy says 51999" in moved.message

    unresolved = found(lab, _policy(lab, endpoint="gateway.invalid:51820"))["tunnel endpoint"]
    assert unresolved.level is Level.WARN and "gateway.invalid does not resolve" in (
        unresolved.message
    )

    policy = _policy(lab)
    lab.cmd.run(["wg", "set", lab.tunnel.interface, "private-key", "/dev/null"])
    other = found(lab, policy)["tunnel"]  # another key on the interface than devices were given
    assert other.level is Level.FAIL and "not the one in" in other.message


@NEEDS_WIREGUARD
def test_a_firewall_set_for_another_interface_or_pool_fails(lab: Lab) -> None:
    """The deploy firewall as shipped names schoolgate-wg and 10.123.0.0/20: loaded unedited
    for a tunnel with another name, every packet from the devices is dropped as forged."""
    policy = _policy(lab)
    assert "tunnel firewall" not in found(lab, policy)  # no schoolgate table: not judged here
    shipped = (NFT_DIR / "schoolgate.nft").read_text()
    ours = {"wg_if": f'"{lab.tunnel.interface}"', "tunnel_nets": f"{{ {POOL} }}"}
    wanted = f'wg_if = "{lab.tunnel.interface}" and tunnel_nets = {{ {POOL} }}'

    def loaded(**defines: str) -> Check:
        lab.cmd.run(["nft", "-f", "-"], input=render_nft(shipped, {**LAB_DEFINES, **defines}))
        return found(lab, policy)["tunnel firewall"]

    unedited = loaded(wg_if='"schoolgate-wg"', tunnel_nets="{ 10.123.0.0/20 }")
    assert unedited.level is Level.FAIL and "get nothing through" in unedited.message
    assert unedited.fix.startswith(f"set {wanted} in the firewall's variables")
    assert loaded(**ours).level is Level.OK
    port = loaded(**ours, wg_port="51999")
    assert port.level is Level.FAIL and port.fix.startswith("set wg_port = 51820 in")
