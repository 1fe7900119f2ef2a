"""Unknown devices: ARP/DHCP parsing on scapy-built packets and captures, and a real sniff
on a veth pair into a network namespace the test makes."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from agent.report import CheckResult, DeviceReport
from proxy_addons.cli.main import main as schoolgate
from proxy_addons.devices import enrolment, reports
from proxy_addons.devices.netwatch import (
    RANDOMISED,
    NetWatch,
    Sighting,
    observations,
    read_pcap,
    record,
    seen,
    unknown_devices,
)
from proxy_addons.store import Store, store_url
from tests.conftest import copy_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
PHONE = "02:11:22:33:44:55"  # locally administered: a randomised phone MAC
LAPTOP = "00:1b:63:aa:bb:cc"
SCHOOL = "00:1b:63:00:00:01"


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp_request(mac: str, ip: str, target: str = "10.9.0.1") -> Ether:
    return Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst=target)


def dhcp(mac: str, kind: str, *options: tuple[str, object]) -> Ether:
    return (
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(op=1, chaddr=_mac_bytes(mac) + b"\0" * 10, xid=0x1234)
        / DHCP(options=[("message-type", kind), *options, "end"])
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def test_arp_requests_and_replies_are_sightings() -> None:
    assert observations(arp_request(LAPTOP, "10.9.0.23")) == [
        Sighting(LAPTOP, "10.9.0.23", None, "arp")
    ]
    reply = Ether(src=PHONE) / ARP(op=2, hwsrc=PHONE.upper(), psrc="10.9.0.40", pdst="10.9.0.1")
    assert observations(reply) == [Sighting(PHONE, "10.9.0.40", None, "arp")]
    probe = arp_request(LAPTOP, "0.0.0.0")  # an ARP probe before taking an address
    assert observations(probe) == [Sighting(LAPTOP, None, None, "arp")]


def test_dhcp_discover_and_request_give_chaddr_requested_ip_and_hostname() -> None:
    discover = dhcp(PHONE, "discover", ("hostname", b"Sams-iPhone"))
    assert observations(discover) == [Sighting(PHONE, None, "Sams-iPhone", "dhcp")]
    request = dhcp(PHONE, "request", ("requested_addr", "10.9.0.77"), ("hostname", b"Sams-iPhone"))
    assert observations(request) == [Sighting(PHONE, "10.9.0.77", "Sams-iPhone", "dhcp")]
    # The frame's source MAC may be a relay's; the client is chaddr.
    relayed = dhcp(LAPTOP, "request", ("requested_addr", "10.9.0.78"))
    relayed[Ether].src = SCHOOL
    assert observations(relayed) == [Sighting(LAPTOP, "10.9.0.78", None, "dhcp")]


def test_other_and_malformed_packets_are_ignored() -> None:
    offer = dhcp(LAPTOP, "offer", ("requested_addr", "10.9.0.5"))  # a server's message
    assert observations(offer) == []
    server_reply = dhcp(LAPTOP, "discover")
    server_reply[BOOTP].op = 2
    assert observations(server_reply) == []
    assert observations(arp_request("ff:ff:ff:ff:ff:ff", "10.9.0.9")) == []
    assert observations(arp_request("00:00:00:00:00:00", "10.9.0.9")) == []
    assert observations(Ether() / IP() / UDP(sport=1234, dport=53) / Raw(b"x")) == []
    # Truncated on the wire: rebuilt from bytes, as a sniffer would see them.
    truncated = Ether(bytes(dhcp(PHONE, "discover", ("hostname", b"x")))[:100])
    assert observations(truncated) == []
    short_arp = Ether(bytes(arp_request(LAPTOP, "10.9.0.2"))[:20])
    assert observations(short_arp) == []
    garbage = Ether(bytes(dhcp(PHONE, "request"))[:282] + b"\x35\x09\x01")  # bad option length
    assert observations(garbage) == []


def test_a_capture_written_with_scapy_is_read_back_into_sightings(
    tmp_path: Path, store: Store
) -> None:
    packets = [
        arp_request(LAPTOP, "10.9.0.23"),
        dhcp(PHONE, "discover", ("hostname", b"Sams-iPhone")),
        Ether() / IP() / UDP(sport=5, dport=53) / Raw(b"dns"),
        dhcp(PHONE, "request", ("requested_addr", "10.9.0.77")),
    ]
    for i, p in enumerate(packets):
        p.time = T0.timestamp() + 60 * i
    capture = tmp_path / "school.pcap"
    wrpcap(str(capture), packets)

    found = read_pcap(capture, store)

    assert found == [
        Sighting(LAPTOP, "10.9.0.23", None, "arp"),
        Sighting(PHONE, None, "Sams-iPhone", "dhcp"),
        Sighting(PHONE, "10.9.0.77", None, "dhcp"),
    ]
    rows = {d.mac: d for d in seen(store)}
    phone = rows[PHONE]
    # The REQUEST adds the address and keeps the hostname the DISCOVER gave.
    assert (phone.ip, phone.hostname, phone.vendor_hint) == ("10.9.0.77", "Sams-iPhone", RANDOMISED)
    assert phone.first_seen == T0 + dt.timedelta(minutes=1)
    assert phone.last_seen == T0 + dt.timedelta(minutes=3)
    assert rows[LAPTOP].vendor_hint is None


def test_unknown_devices_leaves_out_enrolled_macs_and_old_sightings(store: Store) -> None:
    device_id, _ = enrolment.enrol(store, "s3cret", b"s3cret", "LAB-PC-01", T0)
    reports.record_report(
        store,
        DeviceReport(
            device_id=device_id,
            hostname="LAB-PC-01",
            os_name="linux",
            os_version="24.04",
            agent_version="1.0",
            generated_at=T0,
            results=(CheckResult("firewall", "pass", "on"),),
            ips=("10.9.0.10",),
            macs=(SCHOOL,),
        ),
        T0,
        source="10.9.0.10",
    )
    record(store, [Sighting(SCHOOL.upper(), "10.9.0.10", None, "arp")], T0)
    record(store, [Sighting(PHONE, "10.9.0.77", "Sams-iPhone", "dhcp")], T0)
    record(store, [Sighting(LAPTOP, "10.9.0.23", None, "arp")], T0 - dt.timedelta(days=10))

    now = T0 + dt.timedelta(hours=1)
    assert [d.mac for d in unknown_devices(store, now, since_days=7)] == [PHONE]
    assert [d.mac for d in unknown_devices(store, now, since_days=30)] == [PHONE, LAPTOP]


def test_cli_lists_unknown_devices_from_a_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    store = Store.open(store_url(var))
    try:
        now = dt.datetime.now(dt.UTC)
        record(store, [Sighting(PHONE, "10.9.0.77", "Sams-iPhone", "dhcp")], now)
        record(store, [Sighting(LAPTOP, "10.9.0.23", None, "arp")], now - dt.timedelta(days=9))
    finally:
        store.dispose()
    common = ["--policy", str(copy_policy(tmp_path)), "--var", str(var)]

    assert schoolgate(["devices", "unknown", *common]) == 0
    out = capsys.readouterr().out
    assert PHONE in out and "Sams-iPhone" in out and LAPTOP not in out
    assert "1 unknown devices seen in the last 7 days" in out
    assert schoolgate(["devices", "unknown", "--since-days", "30", *common]) == 0
    assert LAPTOP in capsys.readouterr().out


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


SEND = """
import sys
from scapy.all import ARP, BOOTP, DHCP, IP, UDP, Ether, sendp
iface, mac = sys.argv[1], sys.argv[2]
chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
sendp(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc="10.77.0.2",
      pdst="10.77.0.1"), iface=iface, verbose=False)
sendp(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
      / UDP(sport=68, dport=67) / BOOTP(op=1, chaddr=chaddr, xid=7)
      / DHCP(options=[("message-type", "discover"), ("hostname", b"pupil-phone"), "end"]),
      iface=iface, verbose=False)
"""


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """A namespace joined to the host by a veth pair: (namespace, host end, namespace end)."""
    tag = secrets.token_hex(3)
    ns, host_end, ns_end = f"sgnw{tag}", f"sgh{tag}", f"sgn{tag}"
    added = _run("ip", "netns", "add", ns, check=False)
    if added.returncode != 0:
        pytest.skip(f"can't create a network namespace here: {added.stderr.strip()}")
    try:
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _run("ip", "link", "set", ns_end, "netns", ns)
        _run("ip", "link", "set", host_end, "up")
        _run("ip", "-n", ns, "link", "set", ns_end, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, host_end, ns_end
    finally:
        _run("ip", "link", "del", host_end, check=False)  # removes both ends
        _run("ip", "netns", "del", ns, check=False)


def test_netwatch_records_arp_and_dhcp_sent_from_a_namespace(
    namespace: tuple[str, str, str], store: Store
) -> None:
    ns, host_end, ns_end = namespace
    device_mac = "02:aa:bb:cc:dd:01"
    watch = NetWatch(store, host_end)
    watch.start()
    try:
        time.sleep(0.5)  # the sniffer's socket is open before anything is sent
        _run("ip", "netns", "exec", ns, sys.executable, "-c", SEND, ns_end, device_mac)
        deadline = time.monotonic() + 10
        rows = {}
        while time.monotonic() < deadline:
            rows = {d.mac: d for d in seen(store)}
            if device_mac in rows and rows[device_mac].hostname:
                break
            time.sleep(0.1)
    finally:
        watch.stop()
    assert device_mac in rows, f"nothing recorded from {ns}: {rows}"
    found = rows[device_mac]
    assert (found.ip, found.hostname) == ("10.77.0.2", "pupil-phone")
    now = dt.datetime.now(dt.UTC)
    assert [d.mac for d in unknown_devices(store, now, since_days=1)] == [device_mac]
