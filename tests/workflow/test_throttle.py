"""Counting failed guesses: what a client is (an IPv4 address, an IPv6 /64), the sliding
window, and memory that stays bounded whatever names and addresses a guesser makes up."""

from __future__ import annotations

import ipaddress

from hypothesis import example, given
from hypothesis import strategies as st

from proxy_addons.workflow.throttle import FailureCounter, address_key

ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address)
ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(ipv6, st.integers(min_value=0, max_value=2**64 - 1))
@example(ipaddress.IPv6Address(0), 0xFFFF_0000_0000)  # CI found it: the neighbour is IPv4-mapped
def test_every_address_in_an_ipv6_64_is_one_client(
    address: ipaddress.IPv6Address, host: int
) -> None:
    if address.ipv4_mapped is not None:
        return  # those are IPv4 clients (below)
    neighbour = ipaddress.IPv6Address((int(address) >> 64 << 64) | host)
    if neighbour.ipv4_mapped is not None:
        return  # ::/64 holds ::ffff:a.b.c.d, an IPv4 client on a dual-stack socket (below)
    assert address_key(str(address)) == address_key(str(neighbour))
    assert address_key(address.exploded.upper()) == address_key(str(address))  # any spelling
    assert address_key(f"{address}%eth0") == address_key(str(address))


@given(ipv6, ipv6)
def test_different_ipv6_64s_are_different_clients(
    a: ipaddress.IPv6Address, b: ipaddress.IPv6Address
) -> None:
    if a.ipv4_mapped is None and b.ipv4_mapped is None and int(a) >> 64 != int(b) >> 64:
        assert address_key(str(a)) != address_key(str(b))


@given(ipv4, ipv4)
def test_ipv4_clients_are_their_own_address_however_written(
    a: ipaddress.IPv4Address, b: ipaddress.IPv4Address
) -> None:
    assert address_key(str(a)) == str(a) == address_key(f"::ffff:{a}")
    assert (address_key(str(a)) == address_key(f"::ffff:{b}")) == (a == b)


def test_what_is_not_an_address_is_counted_as_it_is() -> None:
    assert address_key("?") == "?"
    assert address_key(None) == address_key("") == "unknown"


def test_failures_count_within_the_window_per_key() -> None:
    clock = Clock()
    counter = FailureCounter(3, 60, clock=clock)
    for _ in range(3):
        assert not counter.blocked("a")
        counter.failed("a")
    assert counter.blocked("a") and not counter.blocked("b")
    clock.now += 59
    assert counter.blocked("a")
    clock.now += 1
    assert not counter.blocked("a")  # the oldest aged out
    counter.failed("a")
    counter.succeeded("a")
    assert not counter.blocked("a")


def test_memory_stays_bounded_and_the_busiest_guesser_is_kept() -> None:
    clock = Clock()
    counter = FailureCounter(5, 900, max_keys=100, clock=clock)
    for _ in range(1000):
        counter.failed("guesser")
    assert len(counter._failures["guesser"]) == 5  # at most `limit` times per key
    for i in range(10_000):
        counter.failed(f"made-up-{i}")
        if i % 50 == 0:
            counter.failed("guesser")  # still guessing: stays among the freshest
    assert len(counter) == 100
    assert counter.blocked("guesser")
