"""Hashed illegal-tier entries: some list providers send SHA-256 hashes of URLs, not the
URLs, so a list that must not be read by anyone is never on the gateway in plain text.

An entry is the SHA-256 (hex, lower case) of a URL's canonical key, the one the illegal
tier matches by (url_keys.illegal_key on hosts.canonical_url_entry): no scheme, the host
in lower case (IDNA as `xn--`), the path with dot segments resolved, escapes decoded one
way, no trailing slash, case folded; the query, if any, after a '?'. For
`HTTP://Example.COM/A/./b.html` that is `example.com/a/b.html`.

A request is covered when the hash of its key, or of the key of any of its path prefixes
or its host alone, is in the set: a hashed entry covers its URL and everything below it.
Pure code: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Iterator

from proxy_addons.core.hosts import canonical_url_entry
from proxy_addons.core.url_keys import illegal_key

HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def entry_hash(url: str) -> str:
    """The hashed entry for a URL as a provider (or a test) writes one."""
    return key_hash(illegal_key(canonical_url_entry(url)))


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_hashed_entry(text: str) -> bool:
    """A line of a hashed list: 64 hex digits (either case)."""
    return HEX_DIGEST.fullmatch(text.lower()) is not None


def covering_keys(key: str) -> Iterator[str]:
    """The key itself, then without its query, then each shorter path prefix down to the
    host alone: every key a hashed entry covering this request could be the hash of."""
    yield key
    rest, sep, _query = key.partition("?")
    if sep:
        yield rest
    while "/" in rest:
        rest = rest.rsplit("/", 1)[0]
        yield rest


def hashed_hit(hashes: Container[str], key: str) -> str | None:
    """The hashed entry covering a request's illegal-tier key, if any."""
    if not hashes:
        return None
    for candidate in covering_keys(key):
        digest = key_hash(candidate)
        if digest in hashes:
            return digest
    return None


def illegal_reference(url: str) -> str:
    """How an illegal-tier URL or entry is written anywhere outside the tier (access log,
    audit trail, exports): `sha256:` and the hash of its canonical key, which the tier's
    provider (or a hashed list) can match, and which no one can open."""
    if url.startswith("sha256:"):
        return url
    try:
        key = illegal_key(canonical_url_entry(url))
    except ValueError:
        key = url
    return "sha256:" + key_hash(key)
