"""Search terms in search engines' URLs, and URLs with their query strings dropped for the log.

The access log keeps what a safeguarding lead needs: which page, and what was
searched for. Query strings otherwise carry session ids, tracking codes and
sometimes tokens, so `log_url` drops them and keeps only a search's own term.

Only the URL a person's search lands on counts: typing-ahead suggestions
(`/complete/search`, `d.js`, `api.php?action=opensearch`) are partial words and
would repeat every search many times over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit

MAX_TERM = 200

_GOOGLE = re.compile(r"^(?:www\.|images\.|news\.|encrypted\.)?google\.(?:com?\.)?[a-z]{2,}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Search:
    param: str  # the query parameter holding the term
    term: str  # decoded, trimmed and capped


def _engine_param(host: str, path: str) -> str | None:
    """The search parameter of a search results page on `host` at `path`, if it is one."""
    if _GOOGLE.match(host):
        return "q" if path in ("/search", "/webhp", "/images") else None
    if host in ("bing.com", "www.bing.com", "cn.bing.com"):
        ok = path in ("/search", "/images/search", "/videos/search", "/news/search")
        return "q" if ok else None
    if host in ("duckduckgo.com", "www.duckduckgo.com", "html.duckduckgo.com"):
        return "q" if path in ("/", "/html", "/html/", "/lite", "/lite/") else None
    if host == "search.yahoo.com" or host.endswith(".search.yahoo.com"):
        return "p" if path == "/search" or path.startswith("/search/") else None
    if host in ("ecosia.org", "www.ecosia.org"):
        return "q" if path in ("/search", "/images", "/videos", "/news") else None
    if host in ("youtube.com", "www.youtube.com", "m.youtube.com"):
        return "search_query" if path == "/results" else None
    if host == "wikipedia.org" or host.endswith(".wikipedia.org"):
        ok = path in ("/wiki/Special:Search", "/w/index.php")
        return "search" if ok else None
    return None


def find(host: str, path_and_query: str) -> Search | None:
    """The search in a request for `host` + `path_and_query`, or None if it is not one."""
    path, _, query = path_and_query.partition("?")
    query = query.partition("#")[0]
    if not query:
        return None
    param = _engine_param(host.lower().rstrip("."), unquote(path))
    if param is None:
        return None
    values = parse_qs(query, keep_blank_values=False, errors="replace").get(param)
    if not values:
        return None
    term = _SPACES.sub(" ", _CONTROL.sub(" ", values[0])).strip()[:MAX_TERM].strip()
    return Search(param, term) if term else None


def extract(host: str, path_and_query: str) -> str | None:
    """The search term (decoded, trimmed, at most 200 characters), or None."""
    search = find(host, path_and_query)
    return search.term if search else None


def log_url(url: str) -> str:
    """`url` without its query string and fragment, except a search's own term.

    Credentials written into the address (`user:pass@`) are never kept.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        pass  # an out-of-range port: left out
    base = f"{parts.scheme}://{netloc}{parts.path}"
    search = find(host, f"{parts.path}?{parts.query}") if parts.query else None
    if search is None:
        return base
    return f"{base}?{search.param}={quote_plus(search.term)}"
