"""Safe search: what to change in a request to Google, Bing, DuckDuckGo or YouTube (pure).

Decrypted and plain requests are rewritten: the engine's own safe-search parameter is set
(`safe=active`, `adlt=strict`, `kp=1`) or YouTube's `YouTube-Restrict` header, after
removing whatever the user sent for it, so a contrary `safe=off` never survives and a
rewritten request rewrites to itself. Traffic decided on the host name alone cannot be
rewritten, so it is steered: the gateway connects to the engine's enforced endpoint
(forcesafesearch.google.com, strict.bing.com, safe.duckduckgo.com, restrict.youtube.com)
while the client's TLS, SNI and Host stay as they were, which is what the engines' own DNS
CNAME method does. Hosts of an engine with no such endpoint are refused instead, and
search engines with no enforceable safe mode are blocked outright (`unsafe_engine`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from proxy_addons.core.policy.model import SafeSearch


class Engine(enum.Enum):
    GOOGLE = "google"
    BING = "bing"
    DUCKDUCKGO = "duckduckgo"
    YOUTUBE = "youtube"


# Search hosts (not Gmail or Docs): www/images/encrypted and bare, on any Google country domain.
_GOOGLE = re.compile(r"^(?:www\.|images\.|encrypted\.)?google\.(?:(?:com?|co)\.)?[a-z]{2,3}$")
_BING = frozenset({"bing.com", "www.bing.com", "cn.bing.com"})
_DUCKDUCKGO = frozenset(
    {
        "duckduckgo.com",
        "www.duckduckgo.com",
        "html.duckduckgo.com",
        "lite.duckduckgo.com",
        "start.duckduckgo.com",
    }
)
# Google's list for YouTube Restricted Mode (support.google.com/a/answer/6214622), plus the
# bare name, which redirects to www.
_YOUTUBE = frozenset(
    {
        "youtube.com",
        "www.youtube.com",
        "m.youtube.com",
        "youtubei.googleapis.com",
        "youtube.googleapis.com",
        "www.youtube-nocookie.com",
    }
)

# The hosts each engine's enforced endpoint serves (the engines' DNS CNAME instructions).
# An engine host missing here (cn.bing.com, html.duckduckgo.com ...) can only be made safe
# by rewriting, so on host-name-only traffic it is refused.
_STEERABLE = {
    Engine.BING: frozenset({"bing.com", "www.bing.com"}),
    Engine.DUCKDUCKGO: frozenset({"duckduckgo.com", "www.duckduckgo.com"}),
    Engine.YOUTUBE: _YOUTUBE,
}
ENDPOINTS = {
    (Engine.GOOGLE, SafeSearch.STRICT): "forcesafesearch.google.com",
    (Engine.GOOGLE, SafeSearch.MODERATE): "forcesafesearch.google.com",  # no moderate one
    (Engine.BING, SafeSearch.STRICT): "strict.bing.com",
    (Engine.BING, SafeSearch.MODERATE): "strict.bing.com",  # no moderate one
    (Engine.DUCKDUCKGO, SafeSearch.STRICT): "safe.duckduckgo.com",
    (Engine.DUCKDUCKGO, SafeSearch.MODERATE): "safe.duckduckgo.com",
    (Engine.YOUTUBE, SafeSearch.STRICT): "restrict.youtube.com",
    (Engine.YOUTUBE, SafeSearch.MODERATE): "restrictmoderate.youtube.com",
}

# (parameter, value) per engine and mode. Google has one enforced setting ("filter").
_PARAMS = {
    (Engine.GOOGLE, SafeSearch.STRICT): ("safe", "active"),
    (Engine.GOOGLE, SafeSearch.MODERATE): ("safe", "active"),
    (Engine.BING, SafeSearch.STRICT): ("adlt", "strict"),
    (Engine.BING, SafeSearch.MODERATE): ("adlt", "moderate"),
    (Engine.DUCKDUCKGO, SafeSearch.STRICT): ("kp", "1"),
    (Engine.DUCKDUCKGO, SafeSearch.MODERATE): ("kp", "-1"),
}
YOUTUBE_HEADER = "YouTube-Restrict"
_YOUTUBE_VALUES = {SafeSearch.STRICT: "Strict", SafeSearch.MODERATE: "Moderate"}

# Search engines with no safe mode a school can enforce, blocked for profiles that need safe
# search. A domain covers its subdomains. Engines that are safe by design (e.g. Swisscows,
# Kiddle) are not here; an allow rule naming an engine's domain lets a school keep one.
UNSAFE_ENGINES = frozenset(
    {
        "yandex.com",
        "yandex.ru",
        "ya.ru",
        "baidu.com",
        "ask.com",
        "search.yahoo.com",
        "search.aol.com",
        "ecosia.org",
        "startpage.com",
        "search.brave.com",
        "qwant.com",
        "mojeek.com",
        "metager.org",
        "metager.de",
        "presearch.com",
        "dogpile.com",
        "yep.com",
        "searx.be",
        "search.marginalia.nu",
        "you.com",
        "seznam.cz",
        "naver.com",
        "sogou.com",
        "so.com",
    }
)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What to change in one request; `query` None means leave the query string alone."""

    engine: Engine
    query: str | None = None
    header: tuple[str, str] | None = None

    def note(self, mode: SafeSearch) -> str:
        """A short note for the access log."""
        return f"safe_search={mode.value} ({self.engine.value})"


def engine_for_host(host: str) -> Engine | None:
    """The engine whose search (or YouTube) host `host` is, if any. `host` is canonical."""
    if _GOOGLE.match(host):
        return Engine.GOOGLE
    if host in _BING:
        return Engine.BING
    if host in _DUCKDUCKGO:
        return Engine.DUCKDUCKGO
    if host in _YOUTUBE:
        return Engine.YOUTUBE
    return None


def unsafe_engine(host: str) -> str | None:
    """The entry of `UNSAFE_ENGINES` covering `host`, if it is such an engine."""
    rest = host
    while True:
        if rest in UNSAFE_ENGINES:
            return rest
        if "." not in rest:
            return None
        rest = rest.split(".", 1)[1]


def steer_target(host: str, mode: SafeSearch) -> str | None:
    """The enforced endpoint to connect to for `host` (host-only traffic), or None.

    None for a host that is no engine's or when `mode` is off. An engine host with no
    endpoint is `refuse_host_only`.
    """
    engine = engine_for_host(host)
    if engine is None or mode is SafeSearch.OFF:
        return None
    steerable = _STEERABLE.get(engine)
    if steerable is not None and host not in steerable:
        return None
    return ENDPOINTS[(engine, mode)]


def refuse_host_only(host: str, mode: SafeSearch) -> bool:
    """An engine host that can be neither rewritten (not decrypted) nor steered."""
    return (
        mode is not SafeSearch.OFF
        and engine_for_host(host) is not None
        and steer_target(host, mode) is None
    )


def rewrite(host: str, query: str, mode: SafeSearch) -> Rewrite | None:
    """The change that makes a request to `host` with query string `query` safe, or None.

    `query` is the raw query string without "?". The result's `query` is the new raw
    query string: the user's other parameters exactly as sent, every spelling of the
    engine's safe-search parameter removed and the enforced one appended.
    """
    engine = engine_for_host(host)
    if engine is None or mode is SafeSearch.OFF:
        return None
    if engine is Engine.YOUTUBE:
        return Rewrite(engine, header=(YOUTUBE_HEADER, _YOUTUBE_VALUES[mode]))
    name, value = _PARAMS[(engine, mode)]
    return Rewrite(engine, query=set_param(query, name, value))


def set_param(query: str, name: str, value: str) -> str:
    """`query` with every `name` parameter (any case or percent-spelling) replaced by one."""
    kept = [p for p in query.split("&") if p and _param_name(p) != name]
    kept.append(f"{name}={value}")
    return "&".join(kept)


def _param_name(pair: str) -> str:
    raw = pair.split("=", 1)[0]
    return unquote_plus(raw).strip().lower()
