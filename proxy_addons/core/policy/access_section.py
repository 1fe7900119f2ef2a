"""Who may use the gateway and how it sees them: `decryption:`, `authentication:` (proxy
sign-in), `network:` (client and management networks) and `devices:` (enrolment,
staleness, the school's resolvers and relays, thresholds and lists).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from proxy_addons.core.policy.checker import Checker, domain_names, empty_map, enum_setting
from proxy_addons.core.policy.device_lists_section import load_usb_allowed, with_lists
from proxy_addons.core.policy.model import (
    Authentication,
    Category,
    Decrypt,
    Decryption,
    Devices,
    IPNetwork,
    Network,
    UntrustedClients,
)
from proxy_addons.core.policy.thresholds_section import load_thresholds
from proxy_addons.core.policy.tunnel_section import load_tunnel
from proxy_addons.core.policy.yaml_reader import LList, LMap, Where

# The admin app's account roles (workflow.accounts.ROLES; core can't import the store's layer).
TWO_FACTOR_ROLES = frozenset({"staff", "dsl", "deputy", "it", "headteacher", "governor"})


def load_decryption(
    ck: Checker, raw: Any, where: Where, categories: dict[str, Category]
) -> Decryption:
    m = ck.mapping(raw, where, "decryption", ["default", "host_only", "untrusted_clients"])
    m = m if m is not None else empty_map(where)
    default = enum_setting(ck, Decrypt, m, "default", Decrypt.DECRYPT) or Decrypt.DECRYPT
    untrusted = enum_setting(
        ck, UntrustedClients, m, "untrusted_clients", UntrustedClients.HOST_ONLY
    )
    ho = ck.mapping(m.get("host_only"), m.at("host_only"), "host_only", ["categories", "domains"])
    ho = ho if ho is not None else empty_map(where)
    cats = frozenset(
        str(c) for c in ck.listing(ho.get("categories"), ho.at("categories"), "categories") or []
    )
    for cat in sorted(cats - ck.declared_categories):
        ck.fail(ho.at("categories"), f"category '{cat}' is not defined under 'categories:'")
    domains = domain_names(ck, ho.get("domains"), ho.at("domains"))
    return Decryption(
        default, cats, domains, untrusted or UntrustedClients.HOST_ONLY, ho.at("domains")
    )


def load_authentication(ck: Checker, raw: Any, where: Where) -> Authentication:
    m = ck.mapping(raw, where, "authentication", ["htpasswd", "ldap", "require_2fa_for"])
    m = m if m is not None else empty_map(where)
    htpasswd = (
        ck.path(m["htpasswd"], m.at("htpasswd"), "the htpasswd file") if m.get("htpasswd") else None
    )
    ldap = m.get("ldap")
    if ldap is not None and not str(ldap).startswith("ldap"):
        ck.fail(m.at("ldap"), "ldap should be a mitmproxy proxyauth spec starting ldap: or ldaps:")
        ldap = None
    if htpasswd and ldap:
        ck.fail(where, "use either htpasswd or ldap for proxy sign-in, not both")
    return Authentication(htpasswd, str(ldap) if ldap else None, _two_factor_roles(ck, m))


def _two_factor_roles(ck: Checker, m: LMap) -> frozenset[str]:
    """`require_2fa_for`: the admin app's roles that must use two-factor sign-in."""
    listed = ck.listing(m.get("require_2fa_for"), m.at("require_2fa_for"), "require_2fa_for")
    roles = frozenset(str(r).strip().lower() for r in listed or [])
    for role in sorted(roles - TWO_FACTOR_ROLES):
        ck.fail(
            m.at("require_2fa_for"),
            f"require_2fa_for: '{role}' is not a role; use {', '.join(sorted(TWO_FACTOR_ROLES))}",
        )
    return roles & TWO_FACTOR_ROLES


def load_devices(ck: Checker, raw: Any, where: Where) -> Devices:
    """The `devices:` section: enrolment secret file, staleness and identity windows."""
    keys = ["enrolment_secret_file", "stale_days", "identity_minutes", "eol_file"]
    keys += ["school_resolvers", "trusted_relays", "tunnel", "thresholds"]
    keys += ["software", "accounts", "removable_storage"]  # device_lists_section.py
    m = ck.mapping(raw, where, "devices", keys)
    if m is None:
        return Devices()

    # The enrolment secret, and the OS end-of-life table (read when a report arrives).
    secret = ck.file_read_when_used(m, "enrolment_secret_file")
    eol = ck.file_read_when_used(m, "eol_file")
    resolvers: set[str] = set()
    listed = m.get("school_resolvers", [])
    if not isinstance(listed, list):
        ck.fail(m.at("school_resolvers"), "school_resolvers should be a list of IP addresses")
        listed = []
    for i, address in enumerate(listed):
        try:
            resolvers.add(str(ipaddress.ip_address(str(address).strip())))
        except ValueError:
            at = listed.at(i) if isinstance(listed, LList) else m.at("school_resolvers")
            ck.fail(at, f"school_resolvers: '{address}' is not an IP address")
    relays = _networks(ck, m, "trusted_relays") or ()
    for relay in relays:
        if relay.prefixlen < (24 if relay.version == 4 else 64):
            # Every address in it could say which device it speaks for.
            ck.fail(
                m.at("trusted_relays"),
                f"trusted_relays: {relay} is wider than a /24 (or an "
                "IPv6 /64): name the relays' own addresses",
            )
    return Devices(
        tunnel=load_tunnel(ck, m.get("tunnel"), m.at("tunnel")),
        thresholds=with_lists(ck, m, load_thresholds(ck, m.get("thresholds"), m.at("thresholds"))),
        usb_storage_allowed=load_usb_allowed(
            ck, m.get("removable_storage"), m.at("removable_storage")
        ),
        trusted_relays=relays,
        school_resolvers=frozenset(resolvers),
        enrolment_secret_file=secret,
        eol_file=eol,
        stale_days=ck.whole(m, "stale_days", 7, 1, 365),
        identity_minutes=ck.whole(m, "identity_minutes", 30, 1, 1440),
    )


def _networks(ck: Checker, m: LMap, key: str) -> tuple[IPNetwork, ...] | None:
    """A list of networks (an address is a network of one); None when `key` is not given."""
    if key not in m:
        return None
    items = ck.listing(m[key], m.at(key), key)
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        try:
            out.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            ck.fail(items.at(i), f"'{item}' in {key} is not a network, e.g. 10.20.0.0/16")
    return tuple(out)


def load_network(ck: Checker, raw: Any, where: Where) -> Network:
    """The `network:` section: who may use the proxy, and the admin app (docs/network.md)."""
    m = ck.mapping(
        raw, where, "network", ["client_networks", "management_networks", "staff_networks"]
    )
    if m is None:
        return Network()

    def networks(key: str) -> tuple[IPNetwork, ...] | None:
        found = _networks(ck, m, key)  # None: the default, private addresses
        if found == ():
            ck.fail(m.at(key), f"{key} names no network: the gateway would serve nobody")
        return found

    clients, managers = networks("client_networks"), networks("management_networks")
    staff = _networks(ck, m, "staff_networks") or ()
    _no_pupils_on_staff_networks(ck, m, clients or (), staff)
    default = Network()
    return Network(
        client_networks=clients or default.client_networks,
        management_networks=managers or default.management_networks,
        staff_networks=staff,
    )


def _no_pupils_on_staff_networks(
    ck: Checker, m: LMap, clients: tuple[IPNetwork, ...], staff: tuple[IPNetwork, ...]
) -> None:
    """A staff network wider than a client network it holds (10.0.0.0/8 over the pupils'
    10.10.0.0/16) would open the admin app's pages to that network's devices."""
    for net in staff:
        for client in clients:
            if client.version == net.version and client != net and client.subnet_of(net):  # type: ignore[arg-type]
                ck.fail(
                    m.at("staff_networks"),
                    f"staff network {net} holds the client network {client}: its devices would "
                    "reach the admin app; name the staff networks themselves",
                )
