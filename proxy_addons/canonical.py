"""Canonical hosts and URLs, spelled the way a browser resolves them.

Filtering decisions compare canonical forms only, so that no spelling of a
blocked host (case, trailing dot, percent-escapes, Unicode vs punycode, IPv4 in
decimal/octal/hex, IPv6 variants) slips through and no allowed host is wrongly
blocked. Parsing follows the WHATWG URL standard via ada-url, which passes the
web-platform-tests conformance data (see tests/test_canonical.py).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

import ada_url


class HostError(ValueError):
    """A host a browser would refuse to parse (so it cannot be requested either)."""


class HostKind(enum.Enum):
    DOMAIN = "domain"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@dataclass(frozen=True, slots=True)
class Host:
    """A canonical host: lower-case ASCII (punycode), no trailing dot; IPs in standard form."""

    name: str
    kind: HostKind

    @property
    def is_ip(self) -> bool:
        return self.kind is not HostKind.DOMAIN

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """An http(s) URL after WHATWG parsing; `query` has no leading '?'."""

    scheme: str
    host: Host
    port: int | None
    path: str
    query: str

    @property
    def host_path(self) -> str:
        """`host/path`, the form list URL entries are written in."""
        return self.host.name + self.path


# Already-canonical ASCII names skip the full parser: lower-case LDH labels whose
# last label starts with a letter (so it cannot be an IPv4 number) and no
# punycode (which the parser must validate).
_FAST_DOMAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)*[a-z][a-z0-9-]*[a-z0-9]\.?")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_ASCII_WHITESPACE = " \t\n\r\f"
_PORT = re.compile(r"[0-9]+")


def _classify(hostname: str) -> Host:
    if hostname.startswith("["):
        return Host(hostname[1:-1], HostKind.IPV6)
    name = hostname.rstrip(".")
    if not name:
        raise HostError(f"empty host {hostname!r}")
    if _IPV4.fullmatch(name):
        return Host(name, HostKind.IPV4)
    return Host(name, HostKind.DOMAIN)


@functools.lru_cache(maxsize=65536)
def canonical_host(raw: str) -> Host:
    """Canonicalise a host as written in a Host header, SNI, CONNECT or list entry.

    A port, if present, is dropped; an IPv6 literal may come with or without brackets.
    """
    if _FAST_DOMAIN.fullmatch(raw) and "xn--" not in raw:
        return Host(raw.rstrip("."), HostKind.DOMAIN)
    text = raw.strip(_ASCII_WHITESPACE)  # not str.strip(): U+3000 or \x1f is no browser's space
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 literal, e.g. from SNI-less CONNECT
    if not text or any(c in text for c in "/?#@\\"):
        raise HostError(f"not a host: {raw!r}")
    try:
        hostname = ada_url.URL(f"http://{text}/").hostname
    except ValueError as exc:
        raise HostError(f"a browser would not accept the host {raw!r}") from exc
    return _classify(hostname)


def _port(text: str) -> int | None:
    """A port as a browser reads one: ASCII digits only, at most 65535."""
    digits = text.lstrip("0") or "0"  # leading zeros are allowed; int() refuses 4300+ digits
    if _PORT.fullmatch(text) and len(digits) <= 5 and int(digits) <= 65535:
        return int(digits)
    return None


def split_authority(authority: str) -> tuple[str, int | None]:
    """Split `host:port` (or `[v6]:port`) into host and port.

    Anything that is not a clean port stays with the host, so that canonical_host refuses
    it rather than this function guessing (and never raising) on hostile input.
    """
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return authority, None
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest in ("", ":"):
            return host, None
        port = _port(rest[1:]) if rest.startswith(":") else None
        return (host, port) if port is not None else (authority, None)
    host, sep, port_text = authority.rpartition(":")
    if sep and ":" not in host and (port := _port(port_text)) is not None:
        return host, port
    return authority, None


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalise_escapes(text: str) -> str:
    """Decode escapes of unreserved characters and upper-case the rest (RFC 3986 6.2.2).

    Servers treat `/%70refix` and `/prefix` alike, so list entries must too.
    """
    if "%" not in text:
        return text

    def fix(m: re.Match[str]) -> str:
        byte = int(m.group(1), 16)
        return chr(byte) if byte in _UNRESERVED else "%" + m.group(1).upper()

    return _ESCAPE.sub(fix, text)


def canonical_url(url: str) -> CanonicalURL:
    """Parse an absolute http(s) URL; raises HostError if a browser would not."""
    try:
        parsed = ada_url.URL(url)
    except ValueError as exc:
        raise HostError(f"a browser would not accept the URL {url!r}") from exc
    scheme = parsed.protocol.rstrip(":")
    if scheme not in ("http", "https"):
        raise HostError(f"not an http(s) URL: {url!r}")
    host = _classify(parsed.hostname)
    path = parsed.pathname or "/"
    if "%" in path:
        # Re-parse so that decoded dots ("/a/%2E%2E/b") are resolved as dot segments.
        path = ada_url.URL("http://h" + _normalise_escapes(path)).pathname
    return CanonicalURL(
        scheme=scheme,
        host=host,
        port=int(parsed.port) if parsed.port else None,
        path=path,
        query=_normalise_escapes(parsed.search[1:]),
    )


def canonical_url_entry(entry: str) -> str:
    """Canonicalise a list's URL entry (`host/path`, scheme optional) to `host/path`.

    A leading `www.` is kept: UT1 and IWF entries name the host they mean.
    """
    text = entry.strip()
    if "://" not in text:
        text = "http://" + text
    url = canonical_url(text)
    path = url.path
    if url.query:
        path += "?" + url.query
    if path == "/" and not entry.rstrip().endswith("/"):
        path = ""
    return url.host.name + path


def host_suffixes(name: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: the domains whose entries cover `name`."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]
