"""Read and validate a policy file into a `Policy`.

Every problem is collected (not just the first) and reported with the file, the
line and a sentence a technician understands. A policy that tries to weaken the
illegal tier is rejected outright.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy_addons.core.pac import ProxyAddressError, parse_proxy_address
from proxy_addons.core.policy.access_section import (
    load_authentication,
    load_decryption,
    load_devices,
    load_network,
)
from proxy_addons.core.policy.changes_section import load_changes
from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.checks_section import load_checks
from proxy_addons.core.policy.content_section import content_lists
from proxy_addons.core.policy.lists_section import (
    load_categories,
    load_illegal,
    protect_illegal_tier,
)
from proxy_addons.core.policy.model import Closure, Policy, Term
from proxy_addons.core.policy.notifications_section import (
    load_monitoring,
    load_notifications,
    load_unblocks,
)
from proxy_addons.core.policy.profiles_section import load_identities, load_profiles
from proxy_addons.core.policy.retention_section import load_retention
from proxy_addons.core.policy.schedules_section import date_spans, load_schedules
from proxy_addons.core.policy.tunnel_section import pool_apart, serving_tunnels
from proxy_addons.core.policy.yaml_reader import LMap, PolicySyntaxError, Where, load_located


class PolicyError(ValueError):
    """One or more problems in a policy; `problems` lists each with its place."""

    def __init__(self, problems: list[tuple[Where, str]]) -> None:
        self.problems = problems
        lines = [f"{where}: {message}" for where, message in problems]
        super().__init__(f"{len(problems)} problem(s) in the policy:\n" + "\n".join(lines))


def load_policy(path: Path) -> Policy:
    """Load and validate `path`; raise PolicyError listing every problem found."""
    path = Path(path).resolve()
    try:
        raw = load_located(path)
    except PolicySyntaxError as exc:
        raise PolicyError([(exc.where, exc.message)]) from exc
    ck = Checker(path.parent)
    ck.files.append(path)
    top = ck.mapping(
        raw,
        Where(str(path), 1),
        "the policy",
        [
            "school",
            "schedules",
            "categories",
            "illegal",
            "decryption",
            "authentication",
            "identities",
            "profiles",
            "unblocks",
            "notifications",
            "monitoring",
            "devices",
            "network",
            "checks",
            "content_filter",
            "retention",
            "changes",
        ],
    )
    if top is None:
        raise PolicyError(ck.problems)
    school = _school(ck, top.get("school"), top.at("school"))
    schedules = load_schedules(ck, top.get("schedules"), top.at("schedules"))
    categories = load_categories(ck, top.get("categories"), top.at("categories"))
    illegal = load_illegal(ck, top.get("illegal"), top.at("illegal"))
    profiles = load_profiles(ck, top.get("profiles"), top.at("profiles"), categories, schedules)
    decryption = load_decryption(ck, top.get("decryption"), top.at("decryption"), categories)
    identities = load_identities(ck, top.get("identities"), top.at("identities"), profiles)
    authentication = load_authentication(ck, top.get("authentication"), top.at("authentication"))
    unblocks = load_unblocks(ck, top.get("unblocks"), top.at("unblocks"))
    notifications = load_notifications(ck, top.get("notifications"), top.at("notifications"))
    monitoring = load_monitoring(
        ck, top.get("monitoring"), top.at("monitoring"), profiles, categories, unblocks
    )
    devices = load_devices(ck, top.get("devices"), top.at("devices"))
    lists = content_lists(ck, top.get("content_filter"), top.at("content_filter"), profiles)
    network = load_network(ck, top.get("network"), top.at("network"))
    pool_apart(ck, network, devices.tunnel, top.get("devices"), top.at("devices"))
    network = serving_tunnels(network, devices.tunnel)
    checks = load_checks(ck, top.get("checks"), top.at("checks"), profiles)
    retention = load_retention(ck, top.get("retention"), top.at("retention"))
    changes = load_changes(ck, top.get("changes"), top.at("changes"))
    proxy_address = _proxy_address(ck, top.get("school"))
    protect_illegal_tier(ck, illegal, profiles, decryption, categories)
    if ck.problems or school is None:
        raise PolicyError(ck.problems)
    name, tz, portal, terms, closures = school
    return Policy(
        path=path,
        school=name,
        timezone=tz,
        portal_host=portal,
        terms=terms,
        closures=closures,
        schedules=schedules,
        categories=categories,
        illegal=illegal,
        profiles=profiles,
        identities=identities,
        authentication=authentication,
        decryption=decryption,
        unblocks=unblocks,
        notifications=notifications,
        monitoring=monitoring,
        devices=devices,
        content_lists=lists,
        network=network,
        checks=checks,
        retention=retention,
        changes=changes,
        proxy_address=proxy_address,
        files=tuple(dict.fromkeys(ck.files)),
    )


def _proxy_address(ck: Checker, raw: Any) -> str | None:
    """`school.proxy_address`: the gateway as devices name it in PAC/WPAD, "host:port"."""
    if not isinstance(raw, LMap) or raw.get("proxy_address") is None:
        return None
    try:
        return parse_proxy_address(str(raw["proxy_address"]))
    except ProxyAddressError as exc:
        ck.fail(raw.at("proxy_address"), str(exc))
        return None


def _school(
    ck: Checker, raw: Any, where: Where
) -> tuple[str, ZoneInfo, str, tuple[Term, ...], tuple[Closure, ...]] | None:
    if raw is None:
        ck.fail(where, "the policy needs a 'school:' section with at least the school's name")
        return None
    keys = ["name", "timezone", "portal_host", "proxy_address", "terms", "closures"]
    m = ck.mapping(raw, where, "school", keys)
    if m is None:
        return None
    name = ck.text(m.get("name"), m.at("name"), "the school's name")
    tz_name = m.get("timezone", "Europe/London")
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        ck.fail(m.at("timezone"), f"'{tz_name}' is not a time zone; write e.g. Europe/London")
        tz = ZoneInfo("UTC")
    portal = str(m.get("portal_host", "schoolgate.local")).strip().lower()
    terms = tuple(
        Term(n, s, e) for n, s, e in date_spans(ck, m.get("terms"), m.at("terms"), "term")
    )
    closures = tuple(
        Closure(n, s, e)
        for n, s, e in date_spans(ck, m.get("closures"), m.at("closures"), "closure")
    )
    if name is None:
        return None
    return name, tz, portal, terms, closures
