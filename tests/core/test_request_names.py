"""The pure parts of deciding on every name: core/names.py, known_names.py, ca_trust.py.

The end-to-end table (tests/gateway/test_request_names_e2e.py) sends the requests; these pin the
rules it rests on, with the test policy's real decide().
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from proxy_addons.core.decide import Decision, Identity, Reason, Request, decide
from proxy_addons.core.hosts import canonical_host
from proxy_addons.core.names import Names, by_destination, decide_names
from proxy_addons.core.policy.runtime import PolicyRuntime
from proxy_addons.gateway.ca_trust import DEVICE_WIDE_SITES, CaTrust
from proxy_addons.gateway.known_names import KnownNames
from tests.conftest import copy_policy

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)  # a Wednesday, outside lunch
PUPIL = Identity(ip="192.0.2.50")  # on no network of the policy: the default profile


@pytest.fixture(scope="module")
def decide_one(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("names")
    runtime = PolicyRuntime(copy_policy(tmp), tmp / "var")
    runtime.start()
    loaded = runtime.current
    assert loaded is not None

    def one(request: Request, identity: Identity = PUPIL) -> Decision:
        return decide(loaded.policy, loaded.index, identity, request, NOW)

    yield one
    runtime.stop_watching()


def h(name: str):  # type: ignore[no-untyped-def]
    return canonical_host(name)


def test_one_name_is_decided_as_before(decide_one) -> None:  # type: ignore[no-untyped-def]
    names = Names(h("plain.test"), (h("PLAIN.test"), h("plain.test.")))
    assert decide_names(decide_one, names, "/") == decide_one(Request(h("plain.test"), "/"))


@pytest.mark.parametrize(
    "destination, claimed, reason, host",
    [
        ("www.chatter.test", ("plain.test",), Reason.RULE, "www.chatter.test"),
        ("plain.test", ("www.chatter.test",), Reason.RULE, "www.chatter.test"),
        ("plain.test", ("other.test",), Reason.FRONTING, "plain.test"),
        ("plain.test", ("schoolgate.local",), Reason.FRONTING, "plain.test"),
        ("schoolgate.local", ("plain.test",), Reason.FRONTING, "schoolgate.local"),
        ("192.0.2.7", ("plain.test",), Reason.BARE_IP, "192.0.2.7"),
        ("illegal.test", ("plain.test", "www.chatter.test"), Reason.ILLEGAL, "illegal.test"),
    ],
)
def test_any_blocked_name_blocks_and_different_sites_are_fronting(  # type: ignore[no-untyped-def]
    decide_one, destination: str, claimed: tuple[str, ...], reason: Reason, host: str
) -> None:
    path = "/prefix/a" if destination == "illegal.test" else "/"
    names = Names(h(destination), tuple(h(c) for c in claimed))
    decision = decide_names(decide_one, names, path)
    assert decision.blocked
    assert decision.reason is reason
    assert decision.host == host


def test_the_same_site_under_another_name_is_not_fronting(decide_one) -> None:  # type: ignore[no-untyped-def]
    names = Names(h("www.plain.test"), (h("plain.test"), h("cdn.plain.test")))
    assert not decide_names(decide_one, names, "/").blocked


def test_the_portal_is_the_portal_only_as_the_destination(decide_one) -> None:  # type: ignore[no-untyped-def]
    alone = decide_names(decide_one, Names(h("schoolgate.local"), (h("SCHOOLGATE.LOCAL"),)))
    assert alone.reason is Reason.PORTAL
    behind = decide_names(decide_one, Names(h("www.chatter.test"), (h("schoolgate.local"),)))
    assert behind.blocked and behind.reason is Reason.RULE


def test_by_address_the_address_decides_unless_a_name_has_it() -> None:
    addresses = {"games.test": {"198.51.100.1"}, "adult.test": {"198.51.100.2"}}

    def known(name: str, address: str) -> bool:
        return address in addresses.get(name, set())

    def names_of(address: str) -> list[str]:
        return [n for n, a in addresses.items() if address in a]

    matched = by_destination(h("198.51.100.1"), (h("games.test"),), known, names_of)
    assert matched.destination == h("games.test") and not matched.by_address
    forged = by_destination(h("198.51.100.2"), (h("games.test"),), known, names_of)
    assert forged.destination == h("198.51.100.2") and forged.by_address
    assert forged.known == (h("adult.test"),)  # the address's own name is decided too
    no_sni = by_destination(h("198.51.100.2"), (), known, names_of)
    assert no_sni.destination.is_ip and no_sni.known == (h("adult.test"),)


def test_by_address_a_blocked_known_name_blocks_for_staff_too(decide_one) -> None:  # type: ignore[no-untyped-def]
    """Staff may visit bare IPs, but not a blocked site's address under another name."""
    staff = Identity(ip="10.20.0.5")

    def as_staff(request: Request) -> Decision:
        return decide_one(request, staff)

    names = Names(
        h("198.51.100.2"), (h("plain.test"),), by_address=True, known=(h("chatter.test"),)
    )
    decision = decide_names(as_staff, names, "/")
    assert decision.blocked and decision.host == "chatter.test"


def test_by_address_allowed_names_are_compared_with_each_other_only(decide_one) -> None:  # type: ignore[no-untyped-def]
    staff = Identity(ip="10.20.0.5")

    def as_staff(request: Request) -> Decision:
        return decide_one(request, staff)

    one = Names(h("198.51.100.9"), (h("plain.test"), h("plain.test")), by_address=True)
    two = Names(h("198.51.100.9"), (h("plain.test"), h("other.test")), by_address=True)
    first, second = decide_names(as_staff, one, "/"), decide_names(as_staff, two, "/")
    assert first.reason is as_staff(Request(h("198.51.100.9"), "/")).reason
    assert second.reason is Reason.FRONTING


# -- known_names: the resolver is a function here (no DNS server runs in the tests) ---------


def test_known_names_remembers_every_address_it_was_given() -> None:
    answers = iter([{"198.51.100.1"}, {"198.51.100.2"}])
    asked: list[str] = []
    now = [0.0]

    async def resolve(name: str) -> set[str]:
        asked.append(name)
        return next(answers)

    names = KnownNames(resolve, recheck_seconds=30, clock=lambda: now[0])
    assert asyncio.run(names.check("a.test", "198.51.100.1"))
    assert not asyncio.run(names.check("a.test", "198.51.100.2"))  # asked a moment ago
    assert asked == ["a.test"]
    now[0] = 31
    assert asyncio.run(names.check("a.test", "198.51.100.2"))  # rotated: added, not replaced
    assert names.known("a.test", "198.51.100.1") and names.known("a.test", "::ffff:198.51.100.1")
    assert sorted(names.names_of("198.51.100.2")) == ["a.test"]
    now[0] = 31 + 3600
    assert not names.known("a.test", "198.51.100.1")  # forgotten after keep_seconds


def test_known_names_fails_closed_when_the_resolver_fails_or_hangs() -> None:
    async def broken(name: str) -> set[str]:
        raise OSError("no such name")

    async def slow(name: str) -> set[str]:
        await asyncio.sleep(10)
        return {"198.51.100.1"}

    assert not asyncio.run(KnownNames(broken).check("a.test", "198.51.100.1"))
    assert not asyncio.run(KnownNames(slow, timeout=0.01).check("a.test", "198.51.100.1"))


def test_known_names_stays_bounded() -> None:
    async def resolve(name: str) -> set[str]:
        return {"198.51.100.1"}

    names = KnownNames(resolve, size=10)
    for i in range(50):
        asyncio.run(names.check(f"n{i}.test", "198.51.100.1"))
    assert len(names._cache) <= 10 and len(names.names_of("198.51.100.1")) <= 64


def test_the_system_resolver_answers_from_the_hosts_file() -> None:
    """The real resolver, for a name every machine has."""
    names = KnownNames()
    assert asyncio.run(names.check("localhost", "127.0.0.1"))


# -- ca_trust ---------------------------------------------------------------------------------


def test_a_refusal_is_remembered_for_its_site_only() -> None:
    now = [0.0]
    alerts: list[tuple[str, str]] = []
    trust = CaTrust(3600, clock=lambda: now[0], on_refusal=lambda d, s: alerts.append((d, s)))
    trust.completed("10.0.0.5")
    trust.refused("10.0.0.5", "pinned.example")
    assert not trust.trusts("10.0.0.5", "pinned.example")
    assert trust.trusts("10.0.0.5", "other.example")
    assert trust.trusts("10.0.0.6", "pinned.example")
    assert alerts == [("10.0.0.5", "pinned.example")]  # it trusted the CA before
    trust.refused("10.0.0.5", "second.example")
    assert len(alerts) == 1  # one alert an hour per device
    now[0] = 3601
    assert trust.trusts("10.0.0.5", "pinned.example")


def test_a_device_that_never_trusted_the_ca_is_untrusting_after_a_few_sites() -> None:
    trust = CaTrust(3600)
    for i in range(DEVICE_WIDE_SITES):
        assert trust.trusts("10.0.0.7", "next.example")
        trust.refused("10.0.0.7", f"site{i}.example")
    assert not trust.trusts("10.0.0.7", "next.example")
    trust.completed("10.0.0.7")  # it has the CA after all: only the refused sites stay
    assert trust.trusts("10.0.0.7", "next.example")
    assert not trust.trusts("10.0.0.7", "site0.example")


def test_a_device_that_trusts_the_ca_cannot_opt_out_of_everything() -> None:
    trust = CaTrust(3600)
    trust.completed("10.0.0.8")
    for i in range(20):
        trust.refused("10.0.0.8", f"site{i}.example")
    assert trust.trusts("10.0.0.8", "another.example")
