"""Termly effectiveness checks: what a case expects, what was seen, and pass or fail (pure).

A school must check at least termly, on a range of devices, that its filtering works (DfE
filtering standards; the SWGfL Test Filtering tool is the public example). A suite is a list of
cases, each a URL with the outcome the policy should give it. The gateway, the device agent
and the browser check page all run the same suite and judge what they saw with the same
functions here, so "blocked" means one thing wherever the check ran. This module is the
contract both sides share, so it lives with the agent (which imports nothing from the
gateway); the gateway reads suite files with `proxy_addons.core.policy.check_suite_file`.

- `CheckCase` is one case (`to_json` / `from_json` are its form on the device API);
- `observe_response` / `observe_error` turn what a client saw into an `Observation`;
- `classify` compares it with the case's expectation: PASS, FAIL, or ERROR when nothing
  could be judged (a timeout, DNS failure): an error is neither a pass nor a fail.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

# The response header the gateway puts on its block page (gateway/addons/filter.py), and the
# wording of its plain-text refusal of a CONNECT (a blocked site the client can't have decrypted).
BLOCK_REFERENCE_HEADER = "X-Schoolgate-Reference"
REFERENCE_PATTERN = re.compile(
    r"\bSG-[23456789BCDFGHJKMNPQRSTVWXYZ]{4}-[23456789BCDFGHJKMNPQRSTVWXYZ]{4}\b"
)
_REFUSAL_TEXT = "Blocked by the school's web filter"
# Titles of the two block pages (templates/block.html and templates/denied.html).
_BLOCK_TITLES = ("<title>This page is blocked", "<title>Access denied")
# What a TLS client says when the gateway refuses a host-only site (refuse_layer.py sends a
# TLS access_denied alert): OpenSSL/curl, Python's ssl and Chromium's wordings.
_TLS_REFUSALS = ("access denied", "access_denied", "err_ssl_protocol_error")
# The header the gateway puts on the answer to a request it sent with safe search enforced,
# saying what the engine received (gateway/addons/safe_search.py; YouTube's is a request header
# nothing in its answer shows).
SAFE_SEARCH_HEADER = "X-Schoolgate-Safe-Search"
# Query settings each engine honours for its strictest safe mode; seen in the URL the engine
# received (a local stand-in echoes it) or in the links of a real engine's result page.
SAFE_SEARCH_MARKERS: dict[str, tuple[str, ...]] = {
    "google": ("safe=active", "safe=strict"),
    "bing": ("adlt=strict",),
    "duckduckgo": ("kp=1",),
    "youtube": ("youtube-restrict", "restrict.youtube.com", "restrictmoderate.youtube.com"),
}
# Hosts that are the engines' enforced endpoints: being sent there is safe search enforced.
SAFE_SEARCH_HOSTS = frozenset(
    {
        "forcesafesearch.google.com",
        "strict.bing.com",
        "safe.duckduckgo.com",
        "restrict.youtube.com",
        "restrictmoderate.youtube.com",
    }
)


class Expect(enum.StrEnum):
    BLOCKED = "blocked"
    ALLOWED = "allowed"
    SAFE_SEARCH = "safe_search"  # the search engine answered with its safe mode enforced


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # nothing could be judged: neither a pass nor a fail


class Place(Protocol):
    """Where a case was written in its suite file (the gateway's reader fills it in)."""

    @property
    def file(self) -> str: ...

    @property
    def line(self) -> int: ...


@dataclass(frozen=True)
class CheckCase:
    id: str
    url: str
    category: str
    profiles: frozenset[str]  # empty: every profile
    expect: Expect
    note: str = ""
    where: Place | None = field(default=None, compare=False)  # the agent's cases have none

    def applies_to(self, profile: str) -> bool:
        return not self.profiles or profile in self.profiles

    def to_json(self) -> dict[str, Any]:
        """For the agent and the check page, which fetch the suite from the gateway."""
        return {
            "id": self.id,
            "url": self.url,
            "category": self.category,
            "profiles": sorted(self.profiles),
            "expect": self.expect.value,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckCase:
        """From the suite the gateway serves; raises KeyError, TypeError or ValueError."""
        return cls(
            id=str(data["id"]),
            url=str(data["url"]),
            category=str(data["category"]),
            profiles=frozenset(str(p) for p in data.get("profiles") or ()),
            expect=Expect(str(data["expect"])),
            note=str(data.get("note") or ""),
        )


@dataclass(frozen=True)
class Observation:
    """What one try of a case's URL showed, wherever it ran."""

    status: int | None  # HTTP status, None if no response came
    blocked: bool  # the school's block page, refusal or illegal-tier page
    block_reference: str | None  # the code on the block page, e.g. SG-7K3Q-M2XD
    safe_search: bool | None  # None: not a search engine page, or not known
    error: str | None  # a timeout, DNS or TLS failure that is not the gateway's refusal
    evidence: str  # one line a person can read: "403 block page SG-...", "timed out"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "blocked": self.blocked,
            "block_reference": self.block_reference,
            "safe_search": self.safe_search,
            "error": self.error,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Observation:
        """From an agent's or browser's report; raises ValueError on a malformed one."""
        status = data.get("status")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            raise ValueError("status should be a number or null")
        safe = data.get("safe_search")
        if safe is not None and not isinstance(safe, bool):
            raise ValueError("safe_search should be true, false or null")
        if not isinstance(data.get("blocked", False), bool):
            raise ValueError("blocked should be true or false")
        ref = data.get("block_reference")
        error = data.get("error")
        return cls(
            status=status,
            blocked=bool(data.get("blocked", False)),
            block_reference=str(ref)[:32] if ref else None,
            safe_search=safe,
            error=str(error)[:500] if error else None,
            evidence=str(data.get("evidence", ""))[:1000],
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def _text(body: bytes | str | None, limit: int = 200_000) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body[:limit].decode("utf-8", "replace")
    return body[:limit]


def block_sign(
    status: int | None, headers: Mapping[str, str], body: bytes | str | None
) -> tuple[bool, str | None]:
    """Is this response the school's block page (or refusal)? And its reference, if any.

    The block page and the illegal-tier page come with status 403 and the
    `X-Schoolgate-Reference` header; the plain-text CONNECT refusal says so in words. Only a
    403 counts: an allowed page that happens to quote a reference is not a block.
    """
    if status != 403:
        return False, None
    ref = _header(headers, BLOCK_REFERENCE_HEADER)
    text = _text(body)
    if ref:
        return True, ref.strip()[:32]
    if _REFUSAL_TEXT in text or any(t in text for t in _BLOCK_TITLES):
        found = REFERENCE_PATTERN.search(text)
        return True, found.group(0) if found else None
    return False, None


def safe_search_seen(url: str, headers: Mapping[str, str], body: bytes | str | None) -> bool | None:
    """Whether a search engine's answer shows its safe mode enforced; None if not a search.

    Evidence, in order: the gateway's `X-Schoolgate-Safe-Search` header; having been sent to
    an engine's enforced host; the engine's safe setting in the final URL or in the page (a
    result page's own links carry it; a local stand-in engine echoes the request it got).
    """
    flag = _header(headers, SAFE_SEARCH_HEADER)
    if flag is not None:
        return flag.strip().lower() not in ("", "0", "off", "no", "false")
    host = (urlsplit(url).hostname or "").lower()
    if host in SAFE_SEARCH_HOSTS:
        return True
    engine = next((e for e in SAFE_SEARCH_MARKERS if e in host), None)
    if engine is None:
        return None
    query = {k.lower(): v.lower() for k, v in parse_qsl(urlsplit(url).query)}
    haystack = (_text(body) + " " + "&".join(f"{k}={v}" for k, v in query.items())).lower()
    haystack += " " + " ".join(f"{k}: {v}" for k, v in headers.items()).lower()
    return any(marker in haystack for marker in SAFE_SEARCH_MARKERS[engine])


def observe_response(
    url: str, status: int, headers: Mapping[str, str], body: bytes | str | None
) -> Observation:
    """What a complete HTTP answer shows (`url` is the final one, after redirects)."""
    if status == 407:  # the proxy wants a sign-in first: nothing about the filter is known
        text = "the gateway asked for proxy sign-in (407)"
        return Observation(status, False, None, None, text, text)
    blocked, ref = block_sign(status, headers, body)
    if blocked:
        evidence = f"{status} block page" + (f" {ref}" if ref else "")
        return Observation(status, True, ref, None, None, evidence)
    safe = safe_search_seen(url, headers, body)
    evidence = f"{status} {urlsplit(url).hostname or url}"
    if safe is not None:
        evidence += ", safe search " + ("enforced" if safe else "not enforced")
    return Observation(status, False, None, safe, None, evidence)


def observe_error(error: str) -> Observation:
    """A try that got no HTTP answer. The gateway's TLS refusal of a blocked host-only site
    (an access_denied alert) counts as blocked; anything else is an error, not a result."""
    text = " ".join(str(error).split())[:500]
    if any(mark in text.lower() for mark in _TLS_REFUSALS):
        return Observation(None, True, None, None, None, f"TLS refused by the gateway ({text})")
    return Observation(None, False, None, None, text or "no answer", text or "no answer")


def classify(case: CheckCase, observation: Observation) -> Outcome:
    """PASS when what was seen is what the case expects, FAIL when not, ERROR when unknown."""
    if observation.error and not observation.blocked:
        return Outcome.ERROR
    if case.expect is Expect.BLOCKED:
        return Outcome.PASS if observation.blocked else Outcome.FAIL
    if case.expect is Expect.ALLOWED:
        if observation.blocked:
            return Outcome.FAIL
        # A 5xx is the site's or the network's trouble, not the filter's verdict.
        if observation.status is not None and observation.status >= 500:
            return Outcome.ERROR
        return Outcome.PASS
    # SAFE_SEARCH: a blocked engine is safe too (one with no safe mode should be blocked).
    if observation.blocked:
        return Outcome.PASS
    if observation.safe_search is None:
        return Outcome.ERROR
    return Outcome.PASS if observation.safe_search else Outcome.FAIL
