"""One decision over every name a request carries.

A request names its destination several times: the address the gateway will connect to
(the request line's authority, the CONNECT target, the original destination in
transparent mode), the Host header or HTTP/2 `:authority`, and the TLS SNI. A client
controls all but the first, and they need not agree: `curl -H "Host: allowed.example"
http://blocked.example/` connects to the blocked site. So every name is decided, the
request is blocked when any of them is blocked, and names of different sites are refused
as fronting. Pure: no mitmproxy, so `policy explain` and the tests call what the proxy
calls.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from proxy_addons.core.decide import Decision, Reason, Request
from proxy_addons.core.hosts import Host, canonical_host, public_suffixes
from proxy_addons.core.policy.model import Action

# Which of several blocks the record shows: the illegal tier first (its page says nothing
# of the site), then the policy's own reasons, fronting last (it is what remains when every
# name on its own is allowed).
_RANK = {
    Reason.ILLEGAL: 0,
    Reason.UNAVAILABLE: 1,
    Reason.INVALID: 2,
    Reason.RULE: 3,
    Reason.BARE_IP: 6,
    Reason.FRONTING: 9,
}


@functools.lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str:
    """The site a host belongs to: example.co.uk for www.example.co.uk, b.github.io for
    a.b.github.io (the Public Suffix List, private section included); an IP, or a name
    that is itself a suffix, is its own."""
    if canonical_host(host).is_ip:
        return host
    return public_suffixes().privatesuffix(host) or host


@dataclass(frozen=True, slots=True)
class Names:
    """The names one request carries, canonical.

    `destination` is where the gateway connects; `claimed` the names the client wrote
    (Host header, `:authority`, SNI, CONNECT target), in that order, repeats allowed.
    `by_address` says the destination is an address the client's packets went to
    (transparent mode) and none of the claimed names is known to have it: the address
    decides, the claimed names can only add a block, and `known` are the names the
    gateway's resolver has given that address, decided too.
    """

    destination: Host
    claimed: tuple[Host, ...] = ()
    by_address: bool = False
    known: tuple[Host, ...] = ()

    def others(self) -> list[Host]:
        """The other names, each once: claimed first, then known."""
        seen = {self.destination.name}
        out = []
        for host in (*self.claimed, *self.known):
            if host.name not in seen:
                seen.add(host.name)
                out.append(host)
        return out


def decide_names(
    decide_one: Callable[[Request], Decision],
    names: Names,
    path: str | None = None,
    scheme: str = "https",
) -> Decision:
    """Decide the destination and every other name; the strictest answer wins.

    The record names the destination (what the gateway really reached) unless another
    name is what blocked: then that name, so the log shows the blocked site.
    """
    primary = decide_one(Request(names.destination, path, scheme))
    others = names.others()
    if not others:
        return primary
    decisions = [primary] + [decide_one(Request(h, path, scheme)) for h in others]
    blocked = [d for d in decisions if d.blocked]
    if blocked:
        return min(blocked, key=lambda d: _RANK.get(d.reason, 5))
    # Names of different sites: fronting. By address, the claimed names are compared with
    # each other only (the address has no site of its own to compare with).
    claimed = {h.name for h in names.claimed}
    compared = [h for h in others if h.name in claimed]
    anchor = compared[0].name if names.by_address and compared else names.destination.name
    site = registrable_domain(anchor)
    for host in compared:
        if registrable_domain(host.name) != site:
            return fronting(primary, host.name)
    # Same site under other names (www.example.com and example.com): keep what each
    # needs, e.g. a path-level entry under either name asks for decryption.
    if any(d.must_decrypt for d in decisions) and not primary.must_decrypt:
        return replace(primary, must_decrypt=True)
    return primary


def fronting(decision: Decision, other: str) -> Decision:
    """Refuse `decision`'s request because it also names `other`, a different site."""
    return Decision(
        Action.BLOCK,
        Reason.FRONTING,
        decision.profile,
        decision.identified_by,
        decision.host,
        url=decision.url,
        user=decision.user,
        ip=decision.ip,
        entry=other,
        decrypt=decision.decrypt,
    )


def by_destination(
    destination: Host,
    claimed: tuple[Host, ...],
    known: Callable[[str, str], bool],
    names_of: Callable[[str], Sequence[str]],
) -> Names:
    """Transparent mode: the names for a destination address the kernel gave.

    The client's SNI or Host header says which site it meant; a name counts only when the
    address is one of its known addresses (`known(name, address)`). Otherwise the address
    itself decides, as a bare IP, with every name it is known by (`names_of`), so a client
    can't reach a blocked address under an allowed name.
    """
    if not destination.is_ip:
        return Names(destination, claimed)
    for host in claimed:
        if not host.is_ip and known(host.name, destination.name):
            return Names(host, claimed)
    aliases = tuple(canonical_host(n) for n in names_of(destination.name))
    return Names(destination, claimed, by_address=True, known=aliases)
