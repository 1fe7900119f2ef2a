"""Temporary educational unblocks: what one covers, and when it is in force.

Plain data, so `decide()` stays a pure function: the gateway passes in the
unblocks in force and the decision names the one it used. The workflow that
creates and ends them (with the store, audit and notifications) is in
`workflow/unblocks.py`.

An unblock opens at most one registrable domain: a public suffix (com, co.uk, and the
private section's shared hosts such as github.io or s3.amazonaws.com) names many unrelated
sites, so it is refused when asked for, when approved, and never covers anything even if an
old one is in the store (`scope_problem`).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

from proxy_addons.core.hosts import HostError, canonical_host, canonical_url_entry, public_suffixes


class Scope(enum.Enum):
    URL = "url"  # exactly this page (any query)
    PREFIX = "prefix"  # this page and everything below it
    DOMAIN = "domain"  # the site and its subdomains


class AudienceKind(enum.Enum):
    USER = "user"
    USERS = "users"  # e.g. a class list
    PROFILE = "profile"
    DEVICE = "device"  # a device's IP address (its agent id once devices enrol)


class Status(enum.Enum):
    PENDING = "pending"  # waiting for a DSL or deputy
    AWAITING_IT = "awaiting_it"  # approved; the policy wants the IT provider to confirm
    ACTIVE = "active"  # approved (and confirmed): in force during its window
    REJECTED = "rejected"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Unblock:
    id: str
    scope: Scope
    target: str  # canonical: a host for DOMAIN, host/path for URL and PREFIX
    audience_kind: AudienceKind
    audience: tuple[str, ...]  # lower-case user names, profile names or IPs
    starts_at: datetime
    ends_at: datetime
    reason: str
    requested_by: str
    status: Status

    def in_force(self, now: datetime) -> bool:
        return self.status is Status.ACTIVE and self.starts_at <= now < self.ends_at

    def covers(self, host: str, url_key: str | None) -> bool:
        """Whether the request (host, and host+path+query when known) is in scope."""
        if scope_problem(self.scope, self.target) is not None:
            return False  # stored before scopes were checked, or edited in the store
        if self.scope is Scope.DOMAIN:
            if host == self.target:
                return True
            # Under the target, and one site with it: amazonaws.com must not cover
            # anybucket.s3.amazonaws.com, whose site is its own (a suffix lies between).
            return host.endswith("." + self.target) and _same_site(host, self.target)
        if url_key is None:
            return False
        if self.scope is Scope.URL:
            return url_key.split("?", 1)[0] == self.target.split("?", 1)[0]
        if not url_key.startswith(self.target):
            return False
        rest = url_key[len(self.target) :]
        return not rest or self.target.endswith("/") or rest[0] in "/?"

    def applies_to(self, user: str | None, profile: str, ip: str | None) -> bool:
        kind = self.audience_kind
        if kind is AudienceKind.PROFILE:
            return profile in self.audience
        if kind is AudienceKind.DEVICE:
            return ip is not None and ip in self.audience
        return user is not None and user.lower() in self.audience


@functools.lru_cache(maxsize=65536)
def _same_site(host: str, target: str) -> bool:
    """Is `host`'s registrable domain the target or a name above it (PSL, private too)?"""
    site = public_suffixes().privatesuffix(host)
    return site is not None and (target == site or target.endswith("." + site))


def parse_target(text: str, scope: Scope | None = None) -> tuple[Scope, str]:
    """Canonicalise what a teacher typed; a bare host means the whole site."""
    raw = text.strip()
    if not raw:
        raise ValueError("say which page or site to unblock")
    try:
        if scope is None:
            has_path = "/" in raw.split("://", 1)[-1].rstrip("/")
            scope = Scope.PREFIX if has_path else Scope.DOMAIN
        if scope is Scope.DOMAIN:
            host = raw.split("://", 1)[-1].split("/", 1)[0]
            target = canonical_host(host).name
        else:
            target = canonical_url_entry(raw)
    except HostError as exc:
        raise ValueError(f"'{text}' is not a web address a browser could open") from exc
    problem = scope_problem(scope, target)
    if problem is not None:
        raise ValueError(problem)
    return scope, target


_DNS_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")  # no wildcard, no empty label


@functools.lru_cache(maxsize=4096)
def scope_problem(scope: Scope, target: str) -> str | None:
    """Why an unblock of canonical `target` would open more than one site, or None.

    A domain must be a registrable domain or a name under one. A page or path may be on a
    public suffix's own host (s3.amazonaws.com/bucket/file), but not its whole root. One IP
    address is one host.
    """
    host, _, path = target.partition("/")
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(host):
        return (
            f"'{host}' is not one site's name (no wildcards or empty labels): give the site, "
            "e.g. example.com, which covers its subdomains too"
        )
    if public_suffixes().privatesuffix(host) is not None:
        return None
    if scope is not Scope.DOMAIN and path.split("?", 1)[0]:
        return None  # one page or folder on that one host
    return (
        f"'{host}' is a public suffix, a name under which anyone can have a site (as with "
        f"com, co.uk or github.io), so it cannot be unblocked as a whole. Name one site "
        f"instead, e.g. example.{host}"
    )


def normalise_audience(kind: AudienceKind, values: list[str]) -> tuple[str, ...]:
    cleaned = [v.strip() for v in values if v.strip()]
    if not cleaned:
        raise ValueError("say who the unblock is for")
    if kind is AudienceKind.USER and len(cleaned) != 1:
        raise ValueError("an unblock for one user names exactly one user")
    if kind is AudienceKind.DEVICE:
        out = []
        for v in cleaned:
            try:
                out.append(str(ipaddress.ip_address(v)))
            except ValueError as exc:
                raise ValueError(f"'{v}' is not a device's IP address") from exc
        return tuple(out)
    if kind is AudienceKind.PROFILE:
        return tuple(cleaned)
    return tuple(v.lower() for v in cleaned)
