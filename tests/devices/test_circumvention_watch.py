"""The packet-side circumvention detector: packets built with scapy, a capture written with
wrpcap, alerts through the outbox on real stores, and a real sniff from a network namespace."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from agent.report import parse_report
from proxy_addons.alerts.events import CIRCUMVENTION
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import enrolment, reports
from proxy_addons.devices.circumvention_watch import (
    DNS_OVER_TLS,
    IPSEC,
    OPENVPN,
    OUTSIDE_DNS,
    QUIC,
    WIREGUARD,
    CircumventionWatch,
    classify,
    read_pcap,
)
from proxy_addons.devices.netwatch import NetWatch
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox
from tests.conftest import copy_policy
from tests.devices.test_device_api import report
from tests.devices.test_netwatch import _run, namespace  # noqa: F401  (a fixture)
from tests.pg import db_url  # noqa: F401  (a fixture)

RESOLVERS = ("10.9.0.53", "2001:db8::53")
PUPIL_MAC = "00:1b:63:aa:bb:cc"
PUPIL_IP = "10.9.0.23"
PHONE_MAC = "02:11:22:33:44:55"


def frame(src_ip: str = PUPIL_IP, dst_ip: str = "203.0.113.7", mac: str = PUPIL_MAC) -> Packet:
    return Ether(src=mac, dst="00:00:5e:00:53:01") / IP(src=src_ip, dst=dst_ip)


def wireguard_initiation(**kw: Any) -> Packet:
    message = b"\x01\x00\x00\x00" + os.urandom(144)  # type 1, reserved, then 144 bytes
    return frame(**kw) / UDP(sport=41000, dport=51820) / Raw(message)


def openvpn_udp_reset() -> Packet:
    # P_CONTROL_HARD_RESET_CLIENT_V2, key id 0; session id; no acks; message packet id 0.
    message = bytes([7 << 3]) + os.urandom(8) + b"\x00" + b"\x00\x00\x00\x00"
    return frame() / UDP(sport=40001, dport=1194) / Raw(message)


def openvpn_tcp_reset() -> Packet:
    # Over TCP, with tls-auth (an HMAC, packet id and time), then the 2-byte length in front.
    body = bytes([7 << 3]) + os.urandom(8) + os.urandom(20) + os.urandom(8) + b"\x00" * 5
    return frame() / TCP(sport=40002, dport=443, flags="PA") / Raw(len(body).to_bytes(2) + body)


def ike_sa_init(port: int = 500) -> Packet:
    # IKE header: SPIi, SPIr 0, next payload SA (33), version 2.0, IKE_SA_INIT (34), flags.
    header = os.urandom(8) + b"\x00" * 8 + bytes([33, 0x20, 34, 0x08]) + b"\x00" * 4
    header += (28).to_bytes(4, "big")
    marker = b"\x00\x00\x00\x00" if port == 4500 else b""
    return frame() / UDP(sport=port, dport=port) / Raw(marker + header)


def quic_initial(size: int = 1252) -> Packet:
    # Long header, fixed bit, type Initial (0), version 1; then connection ids and padding.
    head = bytes([0xC3]) + (1).to_bytes(4, "big") + bytes([8]) + os.urandom(8) + bytes([0])
    return frame() / UDP(sport=50000, dport=443) / Raw(head + os.urandom(size - len(head)))


def dns_query(dst: str, name: str = "example.org", src: str = PUPIL_IP, tcp: bool = False) -> Any:
    query = DNS(id=0x3800, rd=1, qd=DNSQR(qname=name))  # an id like OpenVPN's opcode byte
    if tcp:
        raw = bytes(query)
        return (
            frame(src, dst)
            / TCP(sport=40003, dport=53, flags="PA")
            / Raw(len(raw).to_bytes(2) + raw)
        )
    return frame(src, dst) / UDP(sport=40004, dport=53) / query


def https_hello(dst: str = "203.0.113.80") -> Packet:
    hello = TLS(msg=[TLSClientHello()])
    return frame(dst_ip=dst) / TCP(sport=40005, dport=443, flags="PA") / hello


FLAGGED = {
    "wireguard": (wireguard_initiation, WIREGUARD),
    "dot": (lambda: frame(dst_ip="9.9.9.9") / TCP(sport=40006, dport=853, flags="S"), DNS_OVER_TLS),
    "outside dns": (lambda: dns_query("8.8.8.8"), OUTSIDE_DNS),
    "outside dns over tcp": (lambda: dns_query("1.1.1.1", tcp=True), OUTSIDE_DNS),
    "openvpn udp": (openvpn_udp_reset, OPENVPN),
    "openvpn tcp": (openvpn_tcp_reset, OPENVPN),
    "ike": (ike_sa_init, IPSEC),
    "ike nat-t": (lambda: ike_sa_init(4500), IPSEC),
    "esp": (lambda: frame() / ESP(spi=0x1234, seq=1, data=os.urandom(64)), IPSEC),
    "quic": (quic_initial, QUIC),
    "wireguard over ipv6": (
        lambda: (
            Ether(src=PUPIL_MAC)
            / IPv6(src="2001:db8::23", dst="2001:db8:ffff::1")
            / UDP(sport=41000, dport=51820)
            / Raw(b"\x01\x00\x00\x00" + os.urandom(144))
        ),
        WIREGUARD,
    ),
    "outside dns over ipv6": (
        lambda: (
            Ether(src=PUPIL_MAC)
            / IPv6(src="2001:db8::23", dst="2001:4860:4860::8888")
            / UDP(sport=40007, dport=53)
            / DNS(rd=1, qd=DNSQR(qname="example.org"))
        ),
        OUTSIDE_DNS,
    ),
}

ORDINARY = {
    "https": https_hello,
    "dns to the school resolver": lambda: dns_query("10.9.0.53"),
    "dns over tcp to the school resolver": lambda: dns_query("10.9.0.53", tcp=True),
    "dns to the school resolver over ipv6": lambda: (
        Ether()
        / IPv6(src="2001:db8::23", dst="2001:db8::53")
        / UDP(sport=40008, dport=53)
        / DNS(rd=1, qd=DNSQR(qname="example.org"))
    ),
    "the resolver's own upstream query": lambda: dns_query("8.8.8.8", src="10.9.0.53"),
    "an answer from outside": lambda: (
        frame("8.8.8.8", PUPIL_IP)
        / UDP(sport=53, dport=40004)
        / DNS(id=1, qr=1, qd=DNSQR(qname="example.org"))
    ),
    "dot to the school resolver": lambda: (
        frame(dst_ip="10.9.0.53") / TCP(sport=40009, dport=853, flags="S")
    ),
    "quic short header": lambda: (
        frame() / UDP(sport=50000, dport=443) / Raw(bytes([0x50]) + os.urandom(1300))
    ),
    "a short quic-looking datagram": lambda: quic_initial(300),
    "ntp": lambda: frame() / UDP(sport=123, dport=123) / Raw(b"\x23" + bytes(47)),
    "udp of wireguard's size but not its type": lambda: (
        frame() / UDP(sport=41000, dport=51820) / Raw(b"\x04\x00\x00\x00" + bytes(144))
    ),
    "ping": lambda: frame() / ICMP(),
    "arp": lambda: Ether(src=PUPIL_MAC) / ARP(psrc=PUPIL_IP, pdst="10.9.0.1"),
    "truncated udp": lambda: Ether(bytes(wireguard_initiation())[:40]),
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_ways_round_the_proxy_are_flagged(name: str) -> None:
    build, kind = FLAGGED[name]
    packet = Ether(bytes(build()))  # as it comes off the wire: dissected from bytes
    found = classify(packet, RESOLVERS)
    assert found is not None, f"{name} not flagged"
    assert found.kind == kind
    assert found.mac == PUPIL_MAC


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_traffic_is_ignored(name: str) -> None:
    assert classify(Ether(bytes(ORDINARY[name]())), RESOLVERS) is None


def test_outside_dns_is_judged_only_when_the_policy_names_the_resolvers() -> None:
    packet = Ether(bytes(dns_query("8.8.8.8")))
    assert classify(packet, ()) is None
    found = classify(packet, ["10.9.0.53"])
    assert found is not None and (found.dst, found.port, found.transport) == ("8.8.8.8", 53, "udp")
    dot = classify(Ether(bytes(FLAGGED["dot"][0]())), ())  # DoT needs no resolver list
    assert dot is not None and dot.kind == DNS_OVER_TLS


def test_a_capture_written_with_wrpcap(tmp_path: Path) -> None:
    packets = [
        https_hello(),
        dns_query("10.9.0.53"),
        wireguard_initiation(),
        dns_query("10.9.0.53", tcp=True),
        FLAGGED["dot"][0](),
        dns_query("8.8.8.8"),
        ORDINARY["quic short header"](),
        quic_initial(),
    ]
    path = tmp_path / "school.pcap"
    wrpcap(str(path), packets)
    found = read_pcap(path, RESOLVERS)
    assert [f.kind for f in found] == [WIREGUARD, DNS_OVER_TLS, OUTSIDE_DNS, QUIC]
    assert {f.src for f in found} == {PUPIL_IP}


# -- the policy ------------------------------------------------------------------------------


def resolver_policy(tmp: Path, resolvers: str = "[10.9.0.53, '2001:DB8::53']") -> Path:
    path = copy_policy(tmp)
    (path.parent / "hook-secret").write_text("s3cret\n")
    text = path.read_text().replace(
        "notifications:\n",
        "notifications:\n"
        "  syslog: {host: 127.0.0.1, port: 9, protocol: udp}\n"
        "  webhook: {url: 'http://127.0.0.1:9/hook', secret_file: hook-secret}\n",
        1,
    )
    path.write_text(text + f"\ndevices:\n  school_resolvers: {resolvers}\n")
    return path


def test_school_resolvers_in_the_policy(tmp_path: Path) -> None:
    policy = load_policy(resolver_policy(tmp_path / "a"))
    assert policy.devices.school_resolvers == {"10.9.0.53", "2001:db8::53"}
    assert load_policy(copy_policy(tmp_path / "b")).devices.school_resolvers == frozenset()
    with pytest.raises(PolicyError) as caught:
        load_policy(resolver_policy(tmp_path / "c", "[10.9.0.53, dns.school.example]"))
    assert "school_resolvers: 'dns.school.example' is not an IP address" in str(caught.value)
    assert "school.yaml" in str(caught.value)


# -- alerts ----------------------------------------------------------------------------------


def outbox(store: Store) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(alert_outbox).order_by(alert_outbox.c.id)).all())


@pytest.fixture
def watched(db_url: str, tmp_path: Path) -> Iterator[tuple[Store, Policy, str]]:  # noqa: F811
    store = Store.open(db_url)
    policy = load_policy(resolver_policy(tmp_path))
    now = dt.datetime.now(dt.UTC)
    device_id, _ = enrolment.enrol(store, "k" * 20, b"k" * 20, "lab-pc-07", now)
    sent = report(device_id, now, ips=[PUPIL_IP], macs=[PUPIL_MAC], user="jsmith")
    reports.record_report(store, parse_report(sent), now, source=PUPIL_IP)
    yield store, policy, device_id
    store.dispose()


def test_alerts_name_the_device_and_for_tunnels_tell_the_dsl_who(
    watched: tuple[Store, Policy, str],
) -> None:
    store, policy, device_id = watched
    watch = CircumventionWatch(store, lambda: policy)
    for _ in range(5):  # a handshake retried: one alert per device and kind in the window
        watch.on_packet(Ether(bytes(wireguard_initiation())))
    rows = outbox(store)
    technical = [r for r in rows if r.audience == "technical"]
    safeguarding = [r for r in rows if r.audience == "safeguarding"]
    assert {r.channel for r in technical} == {"webhook", "syslog"}
    assert [r.channel for r in safeguarding] == ["webhook"]
    assert all(r.kind == CIRCUMVENTION and r.occurrences == 1 for r in rows)
    fields = technical[0].event["fields"]
    assert fields["device_id"] == device_id and fields["hostname"] == "lab-pc-07"
    assert fields["mac"] == PUPIL_MAC and "WireGuard" in fields["category"]
    assert "jsmith" not in str(technical[0].event)  # the IT provider never gets the user
    assert safeguarding[0].event["fields"]["user"] == "jsmith"
    assert safeguarding[0].event["fields"]["device"] == "lab-pc-07"

    before = len(outbox(store))
    watch.on_packet(Ether(bytes(quic_initial())))  # not a tunnel: the IT provider only
    added = outbox(store)[before:]
    assert {r.audience for r in added} == {"technical"}
    assert "QUIC" in added[0].event["fields"]["category"]
    watch.on_packet(Ether(bytes(https_hello())))
    assert len(outbox(store)) == before + len(added)


def test_an_unenrolled_device_is_named_by_its_mac_and_address(
    watched: tuple[Store, Policy, str],
) -> None:
    store, policy, _ = watched
    watch = CircumventionWatch(store, lambda: policy, window=dt.timedelta(seconds=0))
    packet = Ether(bytes(frame("10.9.0.99", mac=PHONE_MAC) / UDP(sport=1, dport=51820)))
    assert watch.on_packet(packet) is None  # not a handshake: nothing
    phone = frame("10.9.0.99", "198.51.100.1", mac=PHONE_MAC) / TCP(dport=853, flags="S")
    assert watch.on_packet(Ether(bytes(phone))) is not None
    rows = outbox(store)
    assert {r.channel for r in rows} == {"webhook", "syslog"}
    for row in rows:
        fields = row.event["fields"]
        assert (fields["mac"], fields["ip"]) == (PHONE_MAC, "10.9.0.99")
        assert "device_id" not in fields and fields["site"] == "198.51.100.1 port 853/tcp"
    assert {r.audience for r in rows} == {"technical"}  # no user known: no DSL alert


# -- a real capture ----------------------------------------------------------------------------

SEND = """
import os, sys
from scapy.all import DNS, DNSQR, IP, UDP, TCP, Ether, Raw, sendp
iface, mac = sys.argv[1], sys.argv[2]
base = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.77.0.2", dst="203.0.113.7")
sendp(base / UDP(sport=41000, dport=51820) / Raw(b"\\x01\\x00\\x00\\x00" + os.urandom(144)),
      iface=iface, verbose=False)
sendp(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.77.0.2", dst="8.8.8.8")
      / UDP(sport=40000, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org")),
      iface=iface, verbose=False)
sendp(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.77.0.2", dst="10.9.0.53")
      / UDP(sport=40001, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org")),
      iface=iface, verbose=False)
sendp(base / TCP(sport=40002, dport=443, flags="S"), iface=iface, verbose=False)
"""


def test_netwatch_flags_circumvention_sent_from_a_namespace(
    namespace: tuple[str, str, str],  # noqa: F811
    watched: tuple[Store, Policy, str],
) -> None:
    store, policy, _ = watched
    ns, host_end, ns_end = namespace
    mac = "02:aa:bb:cc:dd:02"
    circumvention = CircumventionWatch(store, lambda: policy)
    watch = NetWatch(store, host_end, circumvention)
    watch.start()
    try:
        time.sleep(0.5)  # the sniffer's socket is open before anything is sent
        _run("ip", "netns", "exec", ns, sys.executable, "-c", SEND, ns_end, mac)
        deadline = time.monotonic() + 10
        kinds: set[str] = set()
        while time.monotonic() < deadline:
            kinds = {r.event["fields"]["category"] for r in outbox(store)}
            if len(kinds) >= 2:
                break
            time.sleep(0.1)
    finally:
        watch.stop()
    assert kinds == {"WireGuard VPN handshake", "DNS to a resolver outside the school"}
    assert all(r.event["fields"]["mac"] == mac for r in outbox(store))


def test_the_netwatch_command_knows_the_switch() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy_addons.cli.main", "netwatch", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--no-circumvention" in out


def test_the_kernel_filter_compiles_with_netwatchs() -> None:
    from scapy.arch.common import compile_filter

    from proxy_addons.devices.circumvention_watch import BPF_FILTER
    from proxy_addons.devices.netwatch import BPF_FILTER as ARP_DHCP

    try:
        program = compile_filter(f"({ARP_DHCP}) or ({BPF_FILTER})")
    except ImportError as exc:  # NetWatch then filters in Python, which the tests above cover
        pytest.skip(f"no libpcap here (apt-get install libpcap0.8): {exc}")
    assert program.bf_len > 20  # a compiled BPF program, instructions and all
