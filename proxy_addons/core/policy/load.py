"""Read and validate a policy file into a `Policy`.

Every problem is collected (not just the first) and reported with the file, the
line and a sentence a technician understands. A policy that tries to weaken the
illegal tier is rejected outright.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy_addons.core.hosts import (
    HostError,
    canonical_host,
    canonical_url_entry,
    illegal_key,
    key_host,
    match_key,
)
from proxy_addons.core.lists.index import CategorySources
from proxy_addons.core.lists.sources import ListSource
from proxy_addons.core.policy.checks_section import load_checks
from proxy_addons.core.policy.content_section import content_lists, profile_content_filter
from proxy_addons.core.policy.model import (
    Action,
    Audience,
    Authentication,
    Category,
    Closure,
    Decrypt,
    Decryption,
    Devices,
    EmailChannel,
    Identities,
    IllegalTier,
    IPNetwork,
    Monitoring,
    Network,
    Notifications,
    Policy,
    Profile,
    Rule,
    SafeSearch,
    Schedule,
    SyslogChannel,
    Term,
    TimeRange,
    UnblockRules,
    UntrustedClients,
    WebhookChannel,
)
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, Where, load_located

RESERVED_CATEGORY = "illegal"
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_GROUPS = {"weekdays": range(0, 5), "weekend": range(5, 7), "every_day": range(0, 7)}
_TIME_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


class PolicyError(ValueError):
    """One or more problems in a policy; `problems` lists each with its place."""

    def __init__(self, problems: list[tuple[Where, str]]) -> None:
        self.problems = problems
        lines = [f"{where}: {message}" for where, message in problems]
        super().__init__(f"{len(problems)} problem(s) in the policy:\n" + "\n".join(lines))


class _Checker:
    """Collects problems while reading; helpers return None on bad input."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[tuple[Where, str]] = []
        self.files: list[Path] = []
        self.declared_categories: set[str] = set()  # named, even if their lists failed

    def fail(self, where: Where, message: str) -> None:
        self.problems.append((where, message))

    def mapping(self, value: Any, where: Where, what: str, allowed: Iterable[str]) -> LMap | None:
        if value is None:
            return _empty_map(where)
        if not isinstance(value, LMap):
            self.fail(where, f"{what} should be a set of 'name: value' settings")
            return None
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                tip = f" Did you mean '{hint[0]}'?" if hint else f" Expected: {', '.join(allowed)}."
                self.fail(value.at(key), f"'{key}' is not a setting of {what}.{tip}")
        return value

    def text(self, value: Any, where: Where, what: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.fail(where, f"{what} should be some text")
        return None

    def listing(self, value: Any, where: Where, what: str) -> LList | None:
        if value is None:
            return _empty_list(where)
        if isinstance(value, str):
            value = _single(value, where)
        if not isinstance(value, LList):
            self.fail(where, f"{what} should be a list, e.g. [a, b]")
            return None
        return value

    def day(self, value: Any, where: Where, what: str) -> date | None:
        if isinstance(value, date):
            return value
        self.fail(where, f"{what} should be a date written YYYY-MM-DD")
        return None

    def path(self, value: Any, where: Where, what: str) -> Path | None:
        text = self.text(value, where, what)
        if text is None:
            return None
        path = (self.base / text).resolve()
        if not path.exists():
            self.fail(where, f"{what} '{text}' does not exist (looked for {path})")
            return None
        self.files.append(path)
        return path


def _empty_map(where: Where) -> LMap:
    out = LMap()
    out.where, out.member_where = where, {}
    return out


def _empty_list(where: Where) -> LList:
    out = LList()
    out.where, out.member_where = where, {}
    return out


def _single(value: str, where: Where) -> LList:
    out = _empty_list(where)
    out.append(value)
    return out


def load_policy(path: Path) -> Policy:
    """Load and validate `path`; raise PolicyError listing every problem found."""
    path = Path(path).resolve()
    try:
        raw = load_located(path)
    except PolicySyntaxError as exc:
        raise PolicyError([(exc.where, exc.message)]) from exc
    ck = _Checker(path.parent)
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
        ],
    )
    if top is None:
        raise PolicyError(ck.problems)
    school = _school(ck, top.get("school"), top.at("school"))
    schedules = _schedules(ck, top.get("schedules"), top.at("schedules"))
    categories = _categories(ck, top.get("categories"), top.at("categories"))
    illegal = _illegal(ck, top.get("illegal"), top.at("illegal"))
    profiles = _profiles(ck, top.get("profiles"), top.at("profiles"), categories, schedules)
    decryption = _decryption(ck, top.get("decryption"), top.at("decryption"), categories)
    identities = _identities(ck, top.get("identities"), top.at("identities"), profiles)
    authentication = _authentication(ck, top.get("authentication"), top.at("authentication"))
    unblocks = _unblocks(ck, top.get("unblocks"), top.at("unblocks"))
    notifications = _notifications(ck, top.get("notifications"), top.at("notifications"))
    monitoring = _monitoring(
        ck, top.get("monitoring"), top.at("monitoring"), profiles, categories, unblocks
    )
    devices = _devices(ck, top.get("devices"), top.at("devices"))
    lists = content_lists(ck, top.get("content_filter"), top.at("content_filter"), profiles)
    network = _network(ck, top.get("network"), top.at("network"))
    checks = load_checks(ck, top.get("checks"), top.at("checks"), profiles)
    proxy_address = _proxy_address(ck, top.get("school"))
    _protect_illegal_tier(ck, illegal, profiles, decryption, categories)
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
        proxy_address=proxy_address,
        files=tuple(dict.fromkeys(ck.files)),
    )


def _proxy_address(ck: _Checker, raw: Any) -> str | None:
    """`school.proxy_address`: the gateway as devices name it in PAC/WPAD, "host:port"."""
    if not isinstance(raw, LMap) or raw.get("proxy_address") is None:
        return None
    from proxy_addons.core.pac import ProxyAddressError, parse_proxy_address

    try:
        return parse_proxy_address(str(raw["proxy_address"]))
    except ProxyAddressError as exc:
        ck.fail(raw.at("proxy_address"), str(exc))
        return None


def _school(
    ck: _Checker, raw: Any, where: Where
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
        Term(n, s, e) for n, s, e in _date_spans(ck, m.get("terms"), m.at("terms"), "term")
    )
    closures = tuple(
        Closure(n, s, e)
        for n, s, e in _date_spans(ck, m.get("closures"), m.at("closures"), "closure")
    )
    if name is None:
        return None
    return name, tz, portal, terms, closures


def _date_spans(ck: _Checker, raw: Any, where: Where, what: str) -> list[tuple[str, date, date]]:
    out: list[tuple[str, date, date]] = []
    items = ck.listing(raw, where, f"the {what}s")
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else where
        m = ck.mapping(item, at, f"a {what}", ["name", "start", "end"])
        if m is None:
            continue
        name = str(m.get("name", f"{what} {i + 1}"))
        start = ck.day(m.get("start"), m.at("start"), f"the {what}'s start")
        end = ck.day(m.get("end", m.get("start")), m.at("end"), f"the {what}'s end")
        if start and end:
            if end < start:
                ck.fail(at, f"the {what} '{name}' ends ({end}) before it starts ({start})")
            else:
                out.append((name, start, end))
    return out


def _schedules(ck: _Checker, raw: Any, where: Where) -> dict[str, Schedule]:
    out: dict[str, Schedule] = {}
    m = ck.mapping(raw, where, "schedules", []) if not isinstance(raw, LMap) else raw
    for name, value in (m or {}).items():
        at = m.at(name) if m is not None else where
        sm = ck.mapping(value, at, f"schedule '{name}'", ["days", "times", "term"])
        if sm is None:
            continue
        days = _days(ck, sm.get("days", ["every_day"]), sm.at("days"), name)
        times = _times(ck, sm.get("times"), sm.at("times"), name)
        term = str(sm.get("term", "any"))
        if term not in ("school_days", "holidays", "any"):
            ck.fail(sm.at("term"), f"term should be school_days, holidays or any, not '{term}'")
        out[name] = Schedule(name, days, times, term, at)
    return out


def _days(ck: _Checker, raw: Any, where: Where, name: str) -> frozenset[int]:
    days: set[int] = set()
    for item in ck.listing(raw, where, f"the days of schedule '{name}'") or []:
        word = str(item).strip().lower()
        if word in DAYS or word in _DAY_NAMES:
            days.add(DAYS[word[:3]])
        elif word in DAY_GROUPS:
            days.update(DAY_GROUPS[word])
        else:
            ck.fail(where, f"'{item}' is not a day; use mon..sun, weekdays, weekend or every_day")
    return frozenset(days)


def _times(ck: _Checker, raw: Any, where: Where, name: str) -> tuple[TimeRange, ...]:
    out: list[TimeRange] = []
    for item in ck.listing(raw, where, f"the times of schedule '{name}'") or []:
        match = _TIME_RANGE.fullmatch(str(item).strip())
        if not match:
            ck.fail(where, f"'{item}' is not a time range; write it like 12:00-13:15")
            continue
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            ck.fail(where, f"'{item}' has an impossible time")
            continue
        start, end = time(h1, m1), time.max if h2 == 24 else time(h2, m2)
        if end <= start:
            ck.fail(where, f"'{item}' ends before it starts; split ranges that cross midnight")
            continue
        out.append(TimeRange(start, end))
    return tuple(out)


_SOURCE_KINDS = ("ut1", "domains", "hosts", "urls")


def _categories(ck: _Checker, raw: Any, where: Where) -> dict[str, Category]:
    out: dict[str, Category] = {}
    if not isinstance(raw, LMap):
        ck.fail(where, "the policy needs a 'categories:' section naming the lists it uses")
        return out
    ck.declared_categories.update(raw)
    for name, value in raw.items():
        at = raw.at(name)
        if name.lower() == RESERVED_CATEGORY:
            ck.fail(at, "'illegal' is reserved for the illegal tier, which has its own section")
            continue
        cm = ck.mapping(value, at, f"category '{name}'", ["label", "sources"])
        if cm is None:
            continue
        label = ck.text(cm.get("label", name), cm.at("label"), f"the label of '{name}'") or name
        sources: list[ListSource] = []
        items = ck.listing(cm.get("sources"), cm.at("sources"), f"the sources of '{name}'")
        for i, item in enumerate(items or []):
            sat = items.at(i) if items is not None else at
            if not (isinstance(item, LMap) and len(item) == 1):
                ck.fail(sat, f"a source is one of {', '.join(_SOURCE_KINDS)}: followed by a path")
                continue
            kind, target = next(iter(item.items()))
            if kind not in _SOURCE_KINDS:
                ck.fail(sat, f"'{kind}' is not a kind of list; use {', '.join(_SOURCE_KINDS)}")
                continue
            path = ck.path(target, sat, f"the {kind} list")
            if path is not None:
                if (kind == "ut1") != path.is_dir():
                    want = "a folder" if kind == "ut1" else "a file"
                    ck.fail(sat, f"the {kind} list should be {want}: {path}")
                    continue
                sources.append(ListSource(kind, path))  # type: ignore[arg-type]
        if not sources and items:
            continue
        if not sources:
            ck.fail(at, f"category '{name}' has no sources")
            continue
        out[name] = Category(name, label, CategorySources(name, tuple(sources)), at)
    return out


def _illegal(ck: _Checker, raw: Any, where: Where) -> IllegalTier:
    exact: dict[str, str] = {}
    prefixes: list[tuple[str, str]] = []
    sources: list[Path] = []
    items = ck.listing(raw, where, "the illegal tier") if raw is not None else None
    if raw is None:
        ck.fail(where, "the policy needs an 'illegal:' section with the provider's lists")
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else where
        if not (
            isinstance(item, LMap) and len(item) == 1 and next(iter(item)) in ("exact", "prefix")
        ):
            ck.fail(at, "an illegal-tier list is 'exact: FILE' or 'prefix: FILE'")
            continue
        kind, target = next(iter(item.items()))
        path = ck.path(target, at, "the illegal-tier list")
        if path is None:
            continue
        sources.append(path)
        for entry, _line in _read_url_list(ck, path):
            if kind == "exact":
                exact[entry] = str(path)
            else:
                prefixes.append((entry, str(path)))
    hosts = frozenset(e.split("/", 1)[0] for e in (*exact, *(p for p, _ in prefixes)))
    return IllegalTier(exact, tuple(prefixes), hosts, tuple(sources))


def _read_url_list(ck: _Checker, path: Path) -> Iterable[tuple[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        ck.fail(Where(str(path), 0), f"cannot read the list ({exc.strerror})")
        return
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield canonical_url_entry(text), n
        except HostError as exc:
            ck.fail(Where(str(path), n), f"'{text}' is not a URL a browser could open ({exc})")


_RULE_KEYS = ("allow", "block", "when", "name")
_MATCH_KEYS = ("categories", "domains", "urls", "bare_ip")


def _profiles(
    ck: _Checker,
    raw: Any,
    where: Where,
    categories: dict[str, Category],
    schedules: dict[str, Schedule],
) -> dict[str, Profile]:
    if not isinstance(raw, LMap) or not raw:
        ck.fail(where, "the policy needs a 'profiles:' section with at least one profile")
        return {}
    keys = ["label", "audience", "extends", "default", "bare_ip", "may_request_unblock", "rules"]
    keys += ["safe_search", "allow_circumvention"]  # docs/policy.md, docs/circumvention.md
    keys += ["content_filter"]  # docs/content-filtering.md
    own: dict[str, tuple[LMap, tuple[Rule, ...]]] = {}
    for name, value in raw.items():
        pm = ck.mapping(value, raw.at(name), f"profile '{name}'", keys + ["illegal"])
        if pm is None:
            continue
        if "illegal" in pm:
            ck.fail(pm.at("illegal"), "the illegal tier cannot be changed or turned off")
        rules = _rules(ck, name, pm.get("rules"), pm.at("rules"), categories, schedules)
        own[name] = (pm, rules)
    out: dict[str, Profile] = {}

    def build(name: str, seen: tuple[str, ...]) -> Profile | None:
        if name in out:
            return out[name]
        pm, rules = own[name]
        parent_name = pm.get("extends")
        parent: Profile | None = None
        if parent_name is not None:
            if parent_name in seen:
                ck.fail(pm.at("extends"), f"profiles extend each other in a circle: {name}")
                return None
            if parent_name not in own:
                ck.fail(pm.at("extends"), f"'{name}' extends '{parent_name}', which is not defined")
                return None
            parent = build(parent_name, (*seen, name))
            if parent is None:
                return None
        audience = _enum(ck, Audience, pm, "audience", parent.audience if parent else None)
        default = _enum(ck, Action, pm, "default", parent.default if parent else Action.ALLOW)
        # Bare IPs: inherited within one audience, else blocked for learners only.
        if parent is not None and parent.audience is audience:
            bare_default = parent.bare_ip
        else:
            bare_default = Action.BLOCK if audience is Audience.LEARNER else Action.ALLOW
        bare_ip = _enum(ck, Action, pm, "bare_ip", bare_default)
        if audience is None:
            ck.fail(pm.where, f"profile '{name}' needs 'audience: learner, staff or guest'")
            audience = Audience.LEARNER
        may = pm.get("may_request_unblock", audience is Audience.STAFF)
        if not isinstance(may, bool):
            ck.fail(pm.at("may_request_unblock"), "may_request_unblock should be true or false")
            may = False
        profile = Profile(
            name=name,
            label=str(pm.get("label", name)),
            audience=audience,
            rules=rules + (parent.rules if parent else ()),
            default=default or Action.ALLOW,
            bare_ip=bare_ip or Action.BLOCK,
            may_request_unblock=may,
            extends=parent_name,
            where=pm.where,
            safe_search=_safe_search(ck, pm, audience, parent),
            allow_circumvention=_allow_circumvention(ck, pm, audience, parent),
            content_filter=profile_content_filter(ck, pm, parent, categories),
        )
        out[name] = profile
        return profile

    for name in own:
        build(name, ())
    return out


def _safe_search(ck: _Checker, pm: LMap, audience: Audience, parent: Profile | None) -> SafeSearch:
    """Own setting, else the parent's within one audience, else strict (moderate for staff)."""
    if parent is not None and parent.audience is audience:
        default = parent.safe_search
    else:
        default = SafeSearch.MODERATE if audience is Audience.STAFF else SafeSearch.STRICT
    if "safe_search" not in pm:
        return default
    value = pm["safe_search"]
    if isinstance(value, bool):  # YAML reads a bare `off` as false (and `on` as true)
        return SafeSearch.STRICT if value else SafeSearch.OFF
    try:
        return SafeSearch(str(value).strip().lower())
    except ValueError:
        ck.fail(
            pm.at("safe_search"),
            f"safe_search should be strict, moderate or off, not '{pm['safe_search']}'",
        )
        return default


def _allow_circumvention(
    ck: _Checker, pm: LMap, audience: Audience, parent: Profile | None
) -> frozenset[str]:
    """Ways round the filter a staff or guest profile may use; learners may use none."""
    from proxy_addons.core.circumvention import KINDS

    inherited = parent.allow_circumvention if parent and parent.audience is audience else None
    if "allow_circumvention" not in pm:
        return frozenset() if audience is Audience.LEARNER else inherited or frozenset()
    at = pm.at("allow_circumvention")
    kinds = _names(ck, pm["allow_circumvention"], at, "allow_circumvention")
    for kind in sorted(kinds - KINDS):
        ck.fail(at, f"'{kind}' is not a kind of circumvention; use {', '.join(sorted(KINDS))}")
    if kinds and audience is Audience.LEARNER:
        ck.fail(at, "learner profiles always block ways round the filter: remove this setting")
        return frozenset()
    return kinds & KINDS


def _enum[E: (Action, Audience, Decrypt, UntrustedClients)](
    ck: _Checker, kind: type[E], m: LMap, key: str, default: E | None
) -> E | None:
    if key not in m:
        return default
    try:
        return kind(str(m[key]).lower())
    except ValueError:
        words = ", ".join(e.value for e in kind)
        ck.fail(m.at(key), f"{key} should be one of {words}, not '{m[key]}'")
        return default


def _rules(
    ck: _Checker,
    profile: str,
    raw: Any,
    where: Where,
    categories: dict[str, Category],
    schedules: dict[str, Schedule],
) -> tuple[Rule, ...]:
    out: list[Rule] = []
    items = ck.listing(raw, where, f"the rules of '{profile}'")
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else where
        rm = ck.mapping(item, at, "a rule", _RULE_KEYS)
        if rm is None:
            continue
        actions = [k for k in ("allow", "block") if k in rm]
        if len(actions) != 1:
            ck.fail(at, "a rule says either 'allow:' or 'block:' (exactly one) and what it covers")
            continue
        action = Action(actions[0])
        spec = rm[actions[0]]
        spec_map: LMap | None
        if isinstance(spec, (LList, str)):
            spec_map = _empty_map(rm.at(actions[0]))
            spec_map["categories"] = spec
        else:
            spec_map = ck.mapping(spec, rm.at(actions[0]), "what a rule covers", _MATCH_KEYS)
        if spec_map is None:
            continue
        spec_at = spec_map.where
        cats = frozenset(
            str(c) for c in ck.listing(spec_map.get("categories"), spec_at, "categories") or []
        )
        for cat in sorted(cats):
            if cat.lower() == RESERVED_CATEGORY:
                ck.fail(spec_at, "rules cannot name the illegal tier: it is always blocked")
            elif cat not in ck.declared_categories:
                hint = difflib.get_close_matches(cat, list(categories), n=1)
                tip = f" Did you mean '{hint[0]}'?" if hint else ""
                ck.fail(spec_at, f"category '{cat}' is not defined under 'categories:'{tip}")
        domains = _domains(ck, spec_map.get("domains"), spec_map.at("domains"))
        urls = _urls(ck, spec_map.get("urls"), spec_map.at("urls"))
        bare_ip = spec_map.get("bare_ip", False)
        if not isinstance(bare_ip, bool):
            ck.fail(spec_map.at("bare_ip"), "bare_ip should be true or false")
            bare_ip = False
        if not (cats or domains or urls or bare_ip):
            ck.fail(at, "this rule covers nothing: give categories, domains, urls or bare_ip")
        when = tuple(str(w) for w in ck.listing(rm.get("when"), rm.at("when"), "when") or [])
        for w in when:
            if w not in schedules:
                ck.fail(rm.at("when"), f"schedule '{w}' is not defined under 'schedules:'")
        name = str(rm["name"]) if "name" in rm else None
        out.append(Rule(action, profile, i + 1, at, name, cats, domains, urls, bare_ip, when))
    return tuple(out)


def _domains(ck: _Checker, raw: Any, where: Where) -> frozenset[str]:
    out: set[str] = set()
    items = ck.listing(raw, where, "domains")
    for i, item in enumerate(items or []):
        try:
            out.add(canonical_host(str(item).strip()).name)
        except HostError:
            at = items.at(i) if items is not None else where
            ck.fail(at, f"'{item}' is not a domain name or IP address")
    return frozenset(out)


def _urls(ck: _Checker, raw: Any, where: Where) -> tuple[str, ...]:
    """A rule's URL entries as match keys, the form requests are compared in."""
    out: list[str] = []
    items = ck.listing(raw, where, "urls")
    for i, item in enumerate(items or []):
        try:
            out.append(match_key(canonical_url_entry(str(item))))
        except HostError:
            at = items.at(i) if items is not None else where
            ck.fail(at, f"'{item}' is not a web address")
    return tuple(out)


def _decryption(
    ck: _Checker, raw: Any, where: Where, categories: dict[str, Category]
) -> Decryption:
    m = ck.mapping(raw, where, "decryption", ["default", "host_only", "untrusted_clients"])
    m = m if m is not None else _empty_map(where)
    default = _enum(ck, Decrypt, m, "default", Decrypt.DECRYPT) or Decrypt.DECRYPT
    untrusted = _enum(ck, UntrustedClients, m, "untrusted_clients", UntrustedClients.HOST_ONLY)
    ho = ck.mapping(m.get("host_only"), m.at("host_only"), "host_only", ["categories", "domains"])
    ho = ho if ho is not None else _empty_map(where)
    cats = frozenset(
        str(c) for c in ck.listing(ho.get("categories"), ho.at("categories"), "categories") or []
    )
    for cat in sorted(cats - ck.declared_categories):
        ck.fail(ho.at("categories"), f"category '{cat}' is not defined under 'categories:'")
    domains = _domains(ck, ho.get("domains"), ho.at("domains"))
    return Decryption(
        default, cats, domains, untrusted or UntrustedClients.HOST_ONLY, ho.at("domains")
    )


def _identities(ck: _Checker, raw: Any, where: Where, profiles: dict[str, Profile]) -> Identities:
    keys = ["default_profile", "users", "groups", "networks"]
    m = ck.mapping(raw, where, "identities", keys)
    m = m if m is not None else _empty_map(where)

    def profile_of(value: Any, at: Where) -> str | None:
        if str(value) in profiles:
            return str(value)
        if profiles:
            ck.fail(at, f"'{value}' is not a profile defined under 'profiles:'")
        return None

    def pairs(key: str) -> list[tuple[str, str, Where]]:
        section = (
            ck.mapping(m.get(key), m.at(key), key, [])
            if not isinstance(m.get(key), LMap)
            else m[key]
        )
        out = []
        for k, v in (section or {}).items():
            at = section.at(k) if section is not None else where
            p = profile_of(v, at)
            if p:
                out.append((str(k), p, at))
        return out

    users = {u.lower(): p for u, p, _ in pairs("users")}
    # Directory DNs are compared without the spaces people put after commas.
    groups = tuple((re.sub(r",\s+", ",", g.strip().lower()), p) for g, p, _ in pairs("groups"))
    networks = []
    for cidr, p, at in pairs("networks"):
        try:
            networks.append((ipaddress.ip_network(cidr, strict=False), p))
        except ValueError:
            ck.fail(at, f"'{cidr}' is not a network; write it like 10.10.0.0/16")
    # Most specific network first, so a /24 inside a /16 wins.
    networks.sort(key=lambda n: -n[0].prefixlen)
    if "default_profile" in m:
        default = profile_of(m["default_profile"], m.at("default_profile")) or ""
    else:
        default = _strictest_learner(profiles)
    if not default and profiles:
        ck.fail(where, "say which profile unidentified devices get: identities.default_profile")
    return Identities(users, groups, tuple(networks), default)


def _strictest_learner(profiles: dict[str, Profile]) -> str:
    """The learner profile that blocks the most: default block first, then most categories."""
    learners = [p for p in profiles.values() if p.audience is Audience.LEARNER]

    def strictness(p: Profile) -> tuple[int, int, int]:
        blocked = {
            c for r in p.rules if r.action is Action.BLOCK and not r.when for c in r.categories
        }
        return (p.default is Action.BLOCK, len(blocked), len(p.rules))

    return max(learners, key=strictness).name if learners else ""


def _authentication(ck: _Checker, raw: Any, where: Where) -> Authentication:
    m = ck.mapping(raw, where, "authentication", ["htpasswd", "ldap"])
    m = m if m is not None else _empty_map(where)
    htpasswd = (
        ck.path(m["htpasswd"], m.at("htpasswd"), "the htpasswd file") if m.get("htpasswd") else None
    )
    ldap = m.get("ldap")
    if ldap is not None and not str(ldap).startswith("ldap"):
        ck.fail(m.at("ldap"), "ldap should be a mitmproxy proxyauth spec starting ldap: or ldaps:")
        ldap = None
    if htpasswd and ldap:
        ck.fail(where, "use either htpasswd or ldap for proxy sign-in, not both")
    return Authentication(htpasswd, str(ldap) if ldap else None)


def _covers(domains: frozenset[str], host: str) -> bool:
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


def _protect_illegal_tier(
    ck: _Checker,
    illegal: IllegalTier,
    profiles: dict[str, Profile],
    decryption: Decryption,
    categories: dict[str, Category],
) -> None:
    """Reject any allow rule or decryption exemption that would reach an illegal entry.

    Compared by case-folded match keys, as the illegal tier matches requests.
    """
    entries = [(illegal.exact_keys[k], k) for k in sorted(illegal.exact_keys)]
    entries += [(entry, key) for key, entry, _source, _b in illegal.prefix_keys]
    seen: set[tuple[str, int]] = set()
    for profile in profiles.values():
        for rule in profile.rules:
            if rule.action is not Action.ALLOW or (rule.profile, rule.index) in seen:
                continue
            seen.add((rule.profile, rule.index))
            urls = [illegal_key(u) for u in rule.urls]
            for entry, key in entries:
                hit = _covers(rule.domains, key_host(key)) or any(
                    key.startswith(u) or u.startswith(key) for u in urls
                )
                if hit:
                    ck.fail(
                        rule.where,
                        f"this allow rule would reach '{entry}' on the illegal tier; "
                        "the illegal tier cannot be overridden, so narrow the rule",
                    )
                    break
    for host in sorted(illegal.hosts):
        if _covers(decryption.host_only_domains, host):
            ck.fail(
                decryption.where,
                f"'{host}' has illegal-tier entries, so it must be decrypted; "
                "remove it from decryption.host_only",
            )


def _names(ck: _Checker, raw: Any, where: Where, what: str) -> frozenset[str]:
    return frozenset(str(n).strip().lower() for n in ck.listing(raw, where, what) or [])


def _unblocks(ck: _Checker, raw: Any, where: Where) -> UnblockRules:
    keys = ["deciders", "it_provider", "require_it_confirmation", "max_days", "lessons", "web_url"]
    m = ck.mapping(raw, where, "unblocks", keys)
    m = m if m is not None else _empty_map(where)
    max_days = m.get("max_days", 7)
    if not isinstance(max_days, int) or isinstance(max_days, bool) or not 1 <= max_days <= 366:
        ck.fail(m.at("max_days"), "max_days should be a whole number of days from 1 to 366")
        max_days = 7
    confirm = m.get("require_it_confirmation", False)
    if not isinstance(confirm, bool):
        ck.fail(m.at("require_it_confirmation"), "require_it_confirmation should be true or false")
        confirm = False
    return UnblockRules(
        deciders=_names(ck, m.get("deciders"), m.at("deciders"), "deciders"),
        it_provider=_names(ck, m.get("it_provider"), m.at("it_provider"), "it_provider"),
        require_it_confirmation=confirm,
        max_days=max_days,
        lessons=_times(ck, m.get("lessons"), m.at("lessons"), "lessons"),
        web_url=str(m.get("web_url", "http://127.0.0.1:8081")).rstrip("/"),
    )


def _notifications(ck: _Checker, raw: Any, where: Where) -> Notifications:
    keys = ["email", "webhook", "teams_url_file", "slack_url_file", "syslog", "contacts"]
    m = ck.mapping(raw, where, "notifications", keys)
    m = m if m is not None else _empty_map(where)
    email = None
    if m.get("email") is not None:
        keys = ["host", "port", "starttls", "username", "password_file", "sender"]
        em = ck.mapping(m["email"], m.at("email"), "email", keys)
        if em is not None:
            host = ck.text(em.get("host"), em.at("host"), "the mail server's host")
            sender = ck.text(em.get("sender"), em.at("sender"), "the sender's address")
            pw = em.get("password_file")
            pw_path = ck.path(pw, em.at("password_file"), "the password file") if pw else None
            port = em.get("port", 587)
            if not isinstance(port, int):
                ck.fail(em.at("port"), "port should be a number")
                port = 587
            if host and sender:
                user = em.get("username")
                email = EmailChannel(
                    host, port, bool(em.get("starttls", True)), user and str(user), pw_path, sender
                )
    webhook = None
    if m.get("webhook") is not None:
        wm = ck.mapping(m["webhook"], m.at("webhook"), "webhook", ["url", "secret_file"])
        if wm is not None:
            url = ck.text(wm.get("url"), wm.at("url"), "the webhook's URL")
            secret = ck.path(wm.get("secret_file"), wm.at("secret_file"), "the secret file")
            if url and secret:
                webhook = WebhookChannel(url, secret)
    contacts_raw = m.get("contacts")
    contacts: dict[str, str] = {}
    if contacts_raw is not None:
        cm = (
            ck.mapping(contacts_raw, m.at("contacts"), "contacts", [])
            if not isinstance(contacts_raw, LMap)
            else contacts_raw
        )
        for name, address in (cm or {}).items():
            if "@" not in str(address):
                ck.fail(m.at("contacts"), f"'{address}' for {name} is not an email address")
            else:
                contacts[str(name).lower()] = str(address)
    teams = slack = None
    if m.get("teams_url_file") is not None:
        teams = ck.path(m["teams_url_file"], m.at("teams_url_file"), "the Teams webhook URL file")
    if m.get("slack_url_file") is not None:
        slack = ck.path(m["slack_url_file"], m.at("slack_url_file"), "the Slack webhook URL file")
    syslog = None
    if m.get("syslog") is not None:
        syslog = _syslog(ck, m["syslog"], m.at("syslog"))
    return Notifications(email, webhook, contacts, teams, slack, syslog)


def _syslog(ck: _Checker, raw: Any, where: Where) -> SyslogChannel | None:
    sm = ck.mapping(raw, where, "syslog", ["host", "port", "protocol"])
    if sm is None:
        return None
    host = ck.text(sm.get("host"), sm.at("host"), "the syslog collector's host")
    protocol = str(sm.get("protocol", "udp")).strip().lower()
    if protocol not in ("udp", "tcp"):
        ck.fail(sm.at("protocol"), "syslog protocol should be udp or tcp")
    port = sm.get("port", 514)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        ck.fail(sm.at("port"), "syslog port should be a number from 1 to 65535")
        port = None
    if host is None or port is None or protocol not in ("udp", "tcp"):
        return None
    return SyslogChannel(host, port, protocol)


def _monitoring(
    ck: _Checker,
    raw: Any,
    where: Where,
    profiles: dict[str, Profile],
    categories: dict[str, Category],
    unblocks: UnblockRules,
) -> Monitoring:
    keys = [
        "retention_days",
        "scan_page_text",
        "phrase_libraries",
        "high_risk_categories",
        "repeated_blocks",
        "fold_minutes",
        "safeguarding",
        "technical",
    ]
    m = ck.mapping(raw, where, "monitoring", keys)
    m = m if m is not None else _empty_map(where)

    def whole(key: str, default: int, low: int, high: int) -> int:
        value = m.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            ck.fail(m.at(key), f"{key} should be a whole number from {low} to {high}")
            return default
        return value

    scan = _names(ck, m.get("scan_page_text"), m.at("scan_page_text"), "scan_page_text")
    for name in sorted(scan - {p.lower() for p in profiles}):
        ck.fail(m.at("scan_page_text"), f"'{name}' is not a profile defined under 'profiles:'")
    libraries = []
    for i, item in enumerate(
        ck.listing(m.get("phrase_libraries"), m.at("phrase_libraries"), "phrase_libraries") or []
    ):
        path = ck.path(item, m.at("phrase_libraries"), f"phrase library {i + 1}")
        if path is not None:
            libraries.append(path)
    risky = frozenset(
        str(c)
        for c in ck.listing(
            m.get("high_risk_categories"), m.at("high_risk_categories"), "high_risk_categories"
        )
        or []
    )
    for cat in sorted(risky - ck.declared_categories - {RESERVED_CATEGORY}):
        ck.fail(
            m.at("high_risk_categories"), f"category '{cat}' is not defined under 'categories:'"
        )
    repeat_count, repeat_minutes = 5, 10
    if m.get("repeated_blocks") is not None:
        rm = ck.mapping(
            m["repeated_blocks"], m.at("repeated_blocks"), "repeated_blocks", ["count", "minutes"]
        )
        if rm is not None:
            repeat_count = rm.get("count", 5) if isinstance(rm.get("count", 5), int) else 5
            repeat_minutes = rm.get("minutes", 10) if isinstance(rm.get("minutes", 10), int) else 10
    safeguarding = _names(ck, m.get("safeguarding"), m.at("safeguarding"), "safeguarding")
    technical = _names(ck, m.get("technical"), m.at("technical"), "technical")
    if libraries:
        from proxy_addons.core.content.phrases import PhraseError, load_libraries

        try:
            load_libraries(libraries)  # a broken library is a broken policy: said with its line
        except PhraseError as exc:
            ck.fail(Where(exc.file, exc.line), f"{exc.field}: {exc.message}")
    return Monitoring(
        retention_days=whole("retention_days", 90, 1, 3650),
        scan_page_text=frozenset(p for p in profiles if p.lower() in scan),
        phrase_libraries=tuple(libraries),
        high_risk_categories=risky,
        repeat_count=repeat_count,
        repeat_minutes=repeat_minutes,
        fold_minutes=whole("fold_minutes", 10, 0, 1440),
        safeguarding=safeguarding or unblocks.deciders,
        technical=technical or unblocks.it_provider,
    )


def _devices(ck: _Checker, raw: Any, where: Where) -> Devices:
    """The `devices:` section: enrolment secret file, staleness and identity windows."""
    keys = ["enrolment_secret_file", "stale_days", "identity_minutes", "eol_file"]
    keys += ["school_resolvers", "trusted_relays"]
    m = ck.mapping(raw, where, "devices", keys)
    if m is None:
        return Devices()

    def whole(key: str, default: int, low: int, high: int) -> int:
        value = m.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            ck.fail(m.at(key), f"{key} should be a whole number from {low} to {high}")
            return default
        return value

    secret = None
    if m.get("enrolment_secret_file") is not None:
        # Not ck.path: that adds it to Policy.files, whose hashes go into the audit log.
        at = m.at("enrolment_secret_file")
        text = ck.text(m["enrolment_secret_file"], at, "enrolment_secret_file")
        secret = (ck.base / text).resolve() if text else None
        if secret is not None and not secret.is_file():
            ck.fail(at, f"enrolment_secret_file '{text}' does not exist (looked for {secret})")
            secret = None
    eol = None
    if m.get("eol_file") is not None:
        # The OS end-of-life table; like the secret, read when used (a report arrives).
        at = m.at("eol_file")
        text = ck.text(m["eol_file"], at, "eol_file")
        eol = (ck.base / text).resolve() if text else None
        if eol is not None and not eol.is_file():
            ck.fail(at, f"eol_file '{text}' does not exist (looked for {eol})")
            eol = None
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
        trusted_relays=relays,
        school_resolvers=frozenset(resolvers),
        enrolment_secret_file=secret,
        eol_file=eol,
        stale_days=whole("stale_days", 7, 1, 365),
        identity_minutes=whole("identity_minutes", 30, 1, 1440),
    )


def _networks(ck: _Checker, m: LMap, key: str) -> tuple[IPNetwork, ...] | None:
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


def _network(ck: _Checker, raw: Any, where: Where) -> Network:
    """The `network:` section: who may use the proxy, and the admin app (docs/network.md)."""
    m = ck.mapping(raw, where, "network", ["client_networks", "management_networks"])
    if m is None:
        return Network()

    def networks(key: str) -> tuple[IPNetwork, ...] | None:
        found = _networks(ck, m, key)  # None: the default, private addresses
        if found == ():
            ck.fail(m.at(key), f"{key} names no network: the gateway would serve nobody")
        return found

    clients, managers = networks("client_networks"), networks("management_networks")
    default = Network()
    return Network(
        client_networks=clients or default.client_networks,
        management_networks=managers or default.management_networks,
    )
