"""The gateway's WireGuard interface for real, and its peers kept in step with the store.

A "gateway" network namespace and "device" namespaces joined by veth pairs, each with its own
wireguard-go interface (this machine's kernel has no WireGuard; the code takes the kernel's
where there is one). The devices are set up with `wg` directly, as a WireGuard app would be.
Needs root, iproute2, wireguard-tools and wireguard-go (.ci/run installs them); without them
the namespace tests are skipped and say why. Dump parsing and the diff are tested in-process.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.tunnel.config import new_private_key, public_key
from proxy_addons.core.policy.model import Tunnel
from proxy_addons.devices import enrolment, tunnels
from proxy_addons.devices.tunnels import Binding
from proxy_addons.ops.wireguard import interface
from proxy_addons.ops.wireguard.commands import Commands, WireGuardError
from proxy_addons.ops.wireguard.interface import Peer, parse_dump
from proxy_addons.ops.wireguard.peers import PeerSync, plan
from proxy_addons.store import Store, store_url
from tests.conftest import ROOT
from tests.gateway.test_transparent_netns import render_nft

GATEWAY_UNDERLAY = "172.31.250.1"
WEB_PORT = 8081  # a web server in the gateway namespace on the device API's port, which the
# deploy firewall opens to the tunnels (nothing else on the gateway answers them)
POOL = ipaddress.IPv4Network("10.123.0.0/24")
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
KEY_A, KEY_B, KEY_C = (public_key(new_private_key()) for _ in range(3))


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and WireGuard interfaces need root"
    for tool, package in (("ip", "iproute2"), ("wg", "wireguard-tools")):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed ({package})"
    if shutil.which("wireguard-go") is None:
        return "wireguard-go is not installed (this kernel has no WireGuard; .ci/run installs it)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing: wireguard-go can't make an interface"
    return None


NEEDS_WIREGUARD = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    return proc


# ------------------------------------------------------------------ in-process

DUMP = (
    "cHJpdmF0ZS1rZXktbm90LWtlcHQtYW55d2hlcmUtIQ==\t"
    f"{KEY_A}\t51820\toff\n"
    f"{KEY_B}\t(none)\t203.0.113.9:40123\t10.123.0.2/32\t1765098000\t1240\t9876\t25\n"
    f"{KEY_C}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
)


def test_a_dump_is_read_into_typed_peers() -> None:
    found = parse_dump("sg-wg", DUMP)
    assert (found.public_key, found.listen_port) == (KEY_A, 51820)
    seen, never = found.peers
    assert seen.endpoint == "203.0.113.9:40123" and seen.allowed_ips == ("10.123.0.2/32",)
    assert seen.latest_handshake == datetime.fromtimestamp(1765098000, UTC)
    assert (seen.rx_bytes, seen.tx_bytes) == (1240, 9876)
    assert never.endpoint is None and never.allowed_ips == () and never.latest_handshake is None
    assert "private" not in repr(found)


@pytest.mark.parametrize("text", ["", "junk\n", f"x\t{KEY_A}\t51820\toff\n{KEY_B}\tonly three\n"])
def test_a_dump_that_is_not_wgs_is_an_error_naming_the_interface(text: str) -> None:
    with pytest.raises(WireGuardError, match="wg show sg-wg dump"):
        parse_dump("sg-wg", text)


def _binding(key: str, address: str, seen: datetime | None = None) -> Binding:
    return Binding(f"dev-{key[:4]}", "pc", key, address, NOW, "device", seen)


def _peer(key: str, *allowed: str, seen: datetime | None = None) -> Peer:
    return Peer(key, None, tuple(allowed), seen, 0, 0)


def test_the_plan_adds_removes_and_corrects_peers() -> None:
    bound = [_binding(KEY_A, "10.123.0.2"), _binding(KEY_B, "10.123.0.3")]
    peers = [
        _peer(KEY_A, "10.123.0.9/32"),  # allowed another address: corrected
        _peer(KEY_C, "10.123.0.4/32"),  # no binding (revoked): removed
    ]
    changes = plan(bound, peers)
    assert [b.public_key for b in changes.added] == [KEY_B]
    assert [b.public_key for b in changes.fixed] == [KEY_A]
    assert changes.removed == (KEY_C,)
    # A peer allowed its address and more (say 0.0.0.0/0) is corrected too.
    wide = plan(bound[:1], [_peer(KEY_A, "0.0.0.0/0", "10.123.0.2/32")])
    assert [b.public_key for b in wide.fixed] == [KEY_A]
    assert not plan(bound[:1], [_peer(KEY_A, "10.123.0.2/32")]).peers_changed


def test_the_plan_records_only_newer_handshakes() -> None:
    earlier, later = NOW - timedelta(minutes=5), NOW
    bound = [
        _binding(KEY_A, "10.123.0.2", seen=earlier),
        _binding(KEY_B, "10.123.0.3", seen=later),
        _binding(KEY_C, "10.123.0.4"),
    ]
    peers = [
        _peer(KEY_A, "10.123.0.2/32", seen=later),
        _peer(KEY_B, "10.123.0.3/32", seen=later),
        _peer(KEY_C, "10.123.0.4/32"),
    ]
    assert plan(bound, peers).handshakes == {KEY_A: later}


def test_the_key_is_made_once_private_to_its_owner(tmp_path: Path) -> None:
    tunnel = Tunnel(pool=POOL, endpoint="gw.example:51820")
    private, key = interface.ensure_keys(tunnel, tmp_path)
    assert private == tmp_path / "wireguard" / "gateway.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    pub = private.with_suffix(".pub")
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644 and pub.read_text().strip() == key
    assert public_key(private.read_text().strip()) == key
    private.chmod(0o644)  # loosened by hand: tightened, the same key kept
    assert interface.ensure_keys(tunnel, tmp_path) == (private, key)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert tunnels.gateway_public_key(tunnel, tmp_path) == key
    private.write_text("not a key\n")
    with pytest.raises(WireGuardError, match="does not hold a WireGuard private key"):
        interface.ensure_keys(tunnel, tmp_path)


def test_a_missing_program_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(
        WireGuardError, match="'wg' is not installed: apt-get install wireguard-tools"
    ):
        Commands().run(["wg", "show"])
    with pytest.raises(WireGuardError, match="apt-get install wireguard-go"):
        Commands().run(["wireguard-go", "sg-wg"])


# ------------------------------------------------------------------ the lab


@dataclass
class Lab:
    """A gateway namespace and device namespaces on one underlay (172.31.250.0/24)."""

    tag: str
    tmp: Path
    store: Store
    tunnel: Tunnel
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"sgwg-g-{self.tag}"

    @property
    def cmd(self) -> Commands:
        return Commands(prefix=("ip", "netns", "exec", self.gateway))

    def in_ns(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *argv, check=check)

    def device(self, number: int, address: str) -> tuple[str, str]:
        """A device namespace with its own WireGuard interface, set up as a WireGuard app
        would be (own key, the gateway as its only peer, everything through it). Returns
        (namespace, public key)."""
        ns, link = f"sgwg-d{number}-{self.tag}", f"sgd{number}{self.tag}"
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run(
            "ip",
            "link",
            "add",
            f"v{link}",
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            f"g{link}",
            "netns",
            self.gateway,
        )
        run("ip", "-n", self.gateway, "link", "set", f"g{link}", "master", f"br{self.tag}", "up")
        run("ip", "-n", ns, "addr", "add", f"172.31.250.{10 + number}/24", "dev", f"v{link}")
        run("ip", "-n", ns, "link", "set", f"v{link}", "up")
        key_file = self.tmp / f"device{number}.key"
        key_file.write_text(new_private_key() + "\n")
        key_file.chmod(0o600)
        self.in_ns(ns, "wireguard-go", f"w{link}")
        gateway_key = tunnels.gateway_public_key(self.tunnel, self.tmp)
        assert gateway_key
        self.in_ns(
            ns,
            "wg",
            "set",
            f"w{link}",
            "private-key",
            str(key_file),
            "peer",
            gateway_key,
            "endpoint",
            f"{GATEWAY_UNDERLAY}:{self.tunnel.listen_port}",
            "allowed-ips",
            str(POOL),
        )
        self.set_address(ns, f"w{link}", address)
        return ns, public_key(key_file.read_text().strip())

    def set_address(self, ns: str, link: str, address: str) -> None:
        self.in_ns(ns, "ip", "addr", "flush", "dev", link)
        self.in_ns(ns, "ip", "addr", "add", f"{address}/32", "dev", link)
        self.in_ns(ns, "ip", "link", "set", link, "up")
        self.in_ns(ns, "ip", "route", "replace", str(POOL), "dev", link)

    def reaches_gateway(self, ns: str) -> bool:
        """A TCP connection to the gateway's tunnel address (the lab's web server there) made
        within 8 s: the SYN is sent again after 1 and 3 s, so a handshake WireGuard retries
        5 s after an unanswered one still fits."""
        address = str(self.tunnel.gateway_address)
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('{address}', {WEB_PORT}), 8).close()\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print(exc)\n"
        )
        return self.in_ns(ns, sys.executable, "-c", probe).stdout.strip() == "connected"


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path) -> Iterator[Lab]:
    """A gateway namespace (a bridge for devices, a web server), removed afterwards."""
    tag = f"{os.getpid() % 100000}"
    store = Store.open(store_url(tmp_path))
    tunnel = Tunnel(
        pool=POOL, endpoint=f"{GATEWAY_UNDERLAY}:51820", interface=f"sgwg{tag}", listen_port=51820
    )
    built = Lab(tag, tmp_path, store, tunnel)
    try:
        run("ip", "netns", "add", built.gateway)
        built.namespaces.append(built.gateway)
        g = built.gateway
        run("ip", "-n", g, "link", "set", "lo", "up")
        run("ip", "-n", g, "link", "add", f"br{tag}", "type", "bridge")
        run("ip", "-n", g, "addr", "add", f"{GATEWAY_UNDERLAY}/24", "dev", f"br{tag}")
        run("ip", "-n", g, "link", "set", f"br{tag}", "up")
        server = ["ip", "netns", "exec", g, sys.executable, "-m", "http.server", str(WEB_PORT)]
        built.processes.append(
            subprocess.Popen(
                server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
            )
        )
        yield built
    finally:
        for process in built.processes:
            process.kill()
            process.wait(timeout=10)
        for ns in reversed(built.namespaces):
            # Deleting the interfaces ends their wireguard-go (and frees its socket).
            links = run("ip", "-n", ns, "-o", "link", "show", check=False).stdout
            for line in links.splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                if name.startswith(("sgwg", "wsgd")):
                    run("ip", "-n", ns, "link", "del", name, check=False)
            run("ip", "netns", "delete", ns, check=False)
        store.dispose()


@dataclass(frozen=True)
class Device:
    device_id: str
    ns: str
    key: str


def _laptop_and_tablet(lab: Lab) -> tuple[Device, Device]:
    """The gateway's interface up and two enrolled devices with their own WireGuard set up
    (10.123.0.2 and .3, the addresses the store will bind them to); not bound yet."""
    interface.bring_up(lab.tunnel, lab.tmp, lab.cmd)
    found = []
    for number, hostname in ((1, "laptop-07"), (2, "tablet-12")):
        device_id, _ = enrolment.enrol(lab.store, "s", b"s", hostname, NOW)
        ns, key = lab.device(number, f"10.123.0.{number + 1}")
        found.append(Device(device_id, ns, key))
    return found[0], found[1]


def _bind(lab: Lab, *found: Device) -> None:
    for device in found:
        tunnels.bind(lab.store, lab.tunnel, device.device_id, device.key, NOW, "it.support")


@NEEDS_WIREGUARD
def test_up_makes_the_interface_with_the_key_and_address(lab: Lab) -> None:
    how = interface.bring_up(lab.tunnel, lab.tmp, lab.cmd)
    assert how in (interface.KERNEL, interface.USERSPACE)
    found = interface.show(lab.tunnel.interface, lab.cmd)
    assert found is not None and found.listen_port == 51820 and found.peers == ()
    assert found.public_key == tunnels.gateway_public_key(lab.tunnel, lab.tmp)
    assert interface.is_up(lab.tunnel.interface, lab.cmd)
    shown = lab.in_ns(lab.gateway, "ip", "-4", "-o", "addr", "show", "dev", lab.tunnel.interface)
    assert "10.123.0.1/24" in shown.stdout
    # Again: nothing new is made, the same key stays.
    assert interface.bring_up(lab.tunnel, lab.tmp, lab.cmd) == "existing"
    again = interface.show(lab.tunnel.interface, lab.cmd)
    assert again is not None and again.public_key == found.public_key


@NEEDS_WIREGUARD
def test_peers_follow_the_store_and_a_revoked_device_is_cut_off_at_once(lab: Lab) -> None:
    laptop, tablet = _laptop_and_tablet(lab)
    assert not lab.reaches_gateway(laptop.ns)  # not bound yet: the gateway doesn't know it

    _bind(lab, laptop, tablet)
    syncer = PeerSync(lab.store, lab.tunnel, lab.cmd)
    changes = syncer.sync()
    assert {b.device_id for b in changes.added} == {laptop.device_id, tablet.device_id}
    assert syncer.describe(changes) == f"added 2 peers ({laptop.device_id}, {tablet.device_id})"
    found = interface.show(lab.tunnel.interface, lab.cmd)
    assert found is not None
    assert {p.public_key: p.allowed_ips for p in found.peers} == {
        laptop.key: ("10.123.0.2/32",),
        tablet.key: ("10.123.0.3/32",),
    }
    assert not syncer.sync().peers_changed  # in step: nothing to do

    assert lab.reaches_gateway(laptop.ns) and lab.reaches_gateway(tablet.ns)
    syncer.sync()
    seen = tunnels.binding_of(lab.store, laptop.device_id)
    assert seen is not None and seen.last_handshake_at is not None  # recorded from the dump

    enrolment.revoke(lab.store, laptop.device_id, "dsl", "lost", NOW)
    changes = syncer.sync()
    assert changes.removed == (laptop.key,)
    assert syncer.describe(changes) == f"removed 1 peer ({laptop.device_id})"
    assert not lab.reaches_gateway(laptop.ns)  # at once: no restart, no timeout
    assert lab.reaches_gateway(tablet.ns)  # the other device is untouched


@NEEDS_WIREGUARD
def test_a_device_cannot_use_another_devices_address(lab: Lab) -> None:
    laptop, tablet = _laptop_and_tablet(lab)
    _bind(lab, laptop, tablet)
    PeerSync(lab.store, lab.tunnel, lab.cmd).sync()
    assert lab.reaches_gateway(tablet.ns)  # with its own address it works

    # The tablet takes the laptop's address: WireGuard drops what the key isn't bound to.
    lab.set_address(tablet.ns, f"wsgd2{lab.tag}", "10.123.0.2")
    before = _received(lab, tablet.key)
    assert not lab.reaches_gateway(tablet.ns)
    assert _received(lab, tablet.key) > before  # the packets came, and were dropped
    # An unused address of the pool is no better.
    lab.set_address(tablet.ns, f"wsgd2{lab.tag}", "10.123.0.77")
    assert not lab.reaches_gateway(tablet.ns)


def _received(lab: Lab, key: str) -> int:
    found = interface.show(lab.tunnel.interface, lab.cmd)
    assert found is not None
    return next(p.rx_bytes for p in found.peers if p.public_key == key)


@NEEDS_WIREGUARD
def test_a_peer_allowed_more_than_its_address_is_corrected(lab: Lab) -> None:
    interface.bring_up(lab.tunnel, lab.tmp, lab.cmd)
    laptop, _ = enrolment.enrol(lab.store, "s", b"s", "laptop-07", NOW)
    tunnels.bind(lab.store, lab.tunnel, laptop, KEY_A, NOW, "device")
    name = lab.tunnel.interface
    # Someone added peers by hand: one allowed the whole pool, one nobody bound.
    lab.cmd.run(["wg", "set", name, "peer", KEY_A, "allowed-ips", str(POOL)])
    lab.cmd.run(["wg", "set", name, "peer", KEY_B, "allowed-ips", "10.123.0.50/32"])
    changes = PeerSync(lab.store, lab.tunnel, lab.cmd).sync()
    assert [b.public_key for b in changes.fixed] == [KEY_A] and changes.removed == (KEY_B,)
    found = interface.show(name, lab.cmd)
    assert found is not None
    assert [(p.public_key, p.allowed_ips) for p in found.peers] == [(KEY_A, ("10.123.0.2/32",))]


@NEEDS_WIREGUARD
def test_sync_without_the_interface_says_what_to_run(lab: Lab) -> None:
    with pytest.raises(WireGuardError, match="schoolgate tunnel up"):
        PeerSync(lab.store, lab.tunnel, lab.cmd).sync()


@NEEDS_WIREGUARD
@pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed")
def test_the_firewall_drops_a_tunnel_address_that_comes_round_the_tunnel(lab: Lab) -> None:
    """deploy/nftables/schoolgate.nft: a device that sends from its tunnel address on the
    school network (not through WireGuard, so no key vouches for it) gets nothing in."""
    nft = (ROOT / "deploy" / "nftables" / "schoolgate.nft").read_text()
    defines = {
        "lan_if": f'"br{lab.tag}"',
        "client_nets": "{ 172.31.250.0/24 }",
        "wg_if": f'"{lab.tunnel.interface}"',
        "tunnel_nets": f"{{ {POOL} }}",
    }
    (lab.tmp / "rules.nft").write_text(render_nft(nft, defines))
    lab.in_ns(lab.gateway, "nft", "-f", str(lab.tmp / "rules.nft"))
    laptop, _ = _laptop_and_tablet(lab)
    _bind(lab, laptop)
    PeerSync(lab.store, lab.tunnel, lab.cmd).sync()
    assert lab.reaches_gateway(laptop.ns)  # through the tunnel: let in

    veth = f"vsgd1{lab.tag}"
    lab.in_ns(laptop.ns, "ip", "addr", "add", "10.123.0.2/32", "dev", veth)
    probe = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(3)\n"
        "s.bind(('10.123.0.2', 0))\n"
        "try:\n"
        f"    s.connect(('{GATEWAY_UNDERLAY}', {WEB_PORT}))\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print(exc)\n"
    )
    lab.in_ns(laptop.ns, "ip", "route", "replace", f"{GATEWAY_UNDERLAY}/32", "dev", veth,
              "src", "10.123.0.2")  # fmt: skip
    assert lab.in_ns(laptop.ns, sys.executable, "-c", probe).stdout.strip() != "connected"
    counted = lab.in_ns(lab.gateway, "nft", "list", "chain", "inet", "schoolgate", "antispoof")
    assert re.search(r"counter packets [1-9]", counted.stdout), counted.stdout
