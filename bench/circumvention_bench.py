"""How fast the packet-side circumvention detector classifies packets.

Builds a mix of ordinary packets (HTTPS, DNS to the school resolver, QUIC short headers)
and circumvention (WireGuard, DoT, outside DNS, QUIC Initial), dissects them from bytes as a
capture would, and times `classify` over them. Prints microseconds per packet and packets
per second for each kind, so the figure can be set against a school network's packet rate
(without libpcap's kernel filter, every packet on the interface reaches Python).

    python bench/circumvention_bench.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from proxy_addons.devices.circumvention_watch import classify

RESOLVERS = frozenset({"10.9.0.53"})


def _frame(dst: str) -> Packet:
    return Ether(src="00:1b:63:aa:bb:cc") / IP(src="10.9.0.23", dst=dst)


KINDS: dict[str, Callable[[], Packet]] = {
    "https segment": lambda: (
        _frame("203.0.113.80")
        / TCP(sport=40000, dport=443, flags="PA")
        / Raw(b"\x17\x03\x03" + os.urandom(1200))
    ),
    "dns to school resolver": lambda: (
        _frame("10.9.0.53") / UDP(sport=40001, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org"))
    ),
    "quic short header": lambda: (
        _frame("203.0.113.80") / UDP(sport=50000, dport=443) / Raw(b"\x50" + os.urandom(1200))
    ),
    "wireguard initiation": lambda: (
        _frame("203.0.113.7")
        / UDP(sport=41000, dport=51820)
        / Raw(b"\x01\x00\x00\x00" + os.urandom(144))
    ),
    "dns over tls": lambda: _frame("9.9.9.9") / TCP(sport=40002, dport=853, flags="S"),
    "outside dns": lambda: (
        _frame("8.8.8.8") / UDP(sport=40003, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org"))
    ),
    "quic initial": lambda: (
        _frame("203.0.113.80")
        / UDP(sport=50001, dport=443)
        / Raw(b"\xc3\x00\x00\x00\x01" + os.urandom(1247))
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'packet':<24} {'µs/packet':>10} {'packets/s':>11}  finding")
    for name, build in KINDS.items():
        packet = Ether(bytes(build()))  # dissected from bytes, as the sniffer hands it over
        finding = classify(packet, RESOLVERS)
        started = time.perf_counter()
        for _ in range(args.rounds):
            classify(packet, RESOLVERS)
        per = (time.perf_counter() - started) / args.rounds
        kind = finding.kind if finding else "-"
        print(f"{name:<24} {per * 1e6:>10.1f} {1 / per:>11,.0f}  {kind}")


if __name__ == "__main__":
    main()
