"""Canonical hosts and URLs, spelled the way a browser resolves them.

Filtering decisions compare canonical forms only, so that no spelling of a
blocked host (case, trailing dot, percent-escapes, Unicode vs punycode, IPv4 in
decimal/octal/hex, IPv6 variants) slips through and no allowed host is wrongly
blocked. Parsing follows the WHATWG URL standard via ada-url, which passes the
web-platform-tests conformance data (see tests/core/test_canonical.py).

List entries and requests are compared by their match keys (`url_keys.py`), the path as
the most lenient common servers read it.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

import ada_url
from publicsuffixlist import PublicSuffixList


class HostError(ValueError):
    """A host or URL a browser would refuse to parse, or a request no server reads one way."""


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
    except ValueError as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError too
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


ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# A path's segments as lenient servers split them: at / and \, escaped or not.
PATH_PIECES = re.compile(r"[/\\]|%2[Ff]|%5[Cc]")
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalise_escapes(text: str) -> str:
    """Decode escapes of unreserved characters and upper-case the rest (RFC 3986 6.2.2).

    Servers treat `/%70refix` and `/prefix` alike, so list entries must too.
    """
    if "%" not in text:
        return text

    def fix(m: re.Match[str]) -> str:
        byte = int(m.group(1), 16)
        return chr(byte) if byte in UNRESERVED else "%" + m.group(1).upper()

    return ESCAPE.sub(fix, text)


def _path_and_query(parsed: ada_url.URL) -> tuple[str, str]:
    path = parsed.pathname or "/"
    if "%" in path:
        # Re-parse so that decoded dots ("/a/%2E%2E/b") are resolved as dot segments.
        path = ada_url.URL("http://h" + _normalise_escapes(path)).pathname
    return path, _normalise_escapes(parsed.search[1:])


def canonical_url(url: str) -> CanonicalURL:
    """Parse an absolute http(s) URL; raises HostError if a browser would not."""
    try:
        parsed = ada_url.URL(url)
    except ValueError as exc:
        raise HostError(f"a browser would not accept the URL {url!r}") from exc
    scheme = parsed.protocol.rstrip(":")
    if scheme not in ("http", "https"):
        raise HostError(f"not an http(s) URL: {url!r}")
    path, query = _path_and_query(parsed)
    return CanonicalURL(
        scheme=scheme,
        host=_classify(parsed.hostname),
        port=int(parsed.port) if parsed.port else None,
        path=path,
        query=query,
    )


# --- a request's URL from its parsed parts ------------------------------------------------
#
# Never one string to re-parse: a Host header of "name:#" or "name/" would turn the real
# path into a fragment or a query. The host is checked to be only a host, the target to be
# only a path (and query), and each is parsed on its own.

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Not in a host: the URL's delimiters, space of any kind, controls, lone surrogates.
_NOT_A_HOST = re.compile(r"[/?#@\\\[\]:\s\x00-\x1f\x7f\ud800-\udfff]")
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")
# RFC 3986 reg-name / IPv4address, without the sub-delims no DNS name holds (a repeated
# Host header arrives joined by ','): unreserved, pct-encoded, and non-ASCII (IDN as
# UTF-8, which browsers send punycoded but other clients do not).
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2}|[^\x00-\x7f\s\ud800-\udfff])+")
# Refused in a request-target: no client means them, and servers read them differently
# (a '#' ends the path for nginx and Apache but is a character for Go; tabs are dropped by
# URL parsers and kept by servers).
_NOT_IN_TARGET = re.compile(r"[\x00-\x20\x7f#]")


def _host_only(text: str) -> Host:
    """A host name or IP literal, with nothing else in it (no port, path, user or space)."""
    if ":" in text or text.startswith("["):
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        if not _IPV6_TEXT.fullmatch(inner):
            raise HostError(f"not a host: {text!r}")
        host = canonical_host(f"[{inner}]")
        if host.kind is not HostKind.IPV6:
            raise HostError(f"not an IPv6 address: {text!r}")
        return host
    if not text or _NOT_A_HOST.search(text):
        raise HostError(f"not a host: {text!r}")
    return canonical_host(text)


def valid_authority(text: str) -> tuple[Host, int | None]:
    """The host and port of a Host header (`host[:port]`, RFC 9110 / RFC 3986).

    The host is a reg-name (without sub-delims), an IPv4 address or a bracketed IPv6
    literal; the port is ASCII digits (empty means none). Anything else raises HostError:
    the request gets a 400. What browsers and curl send (IDN in UTF-8, any case, a
    trailing dot) is accepted and canonicalised as canonical_host would.
    """
    if text.startswith("["):
        end = text.find("]")
        host_text, rest = (text[: end + 1], text[end + 1 :]) if end > 0 else (text, "")
        if end < 0 or (rest and not rest.startswith(":")):
            raise HostError(f"not a host[:port]: {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host_text, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
        if not _REG_NAME.fullmatch(host_text):
            raise HostError(f"not a host[:port]: {text!r}")
    port = None
    if port_text:
        port = _port(port_text)
        if port is None:
            raise HostError(f"not a port: {text!r}")
    return _host_only(host_text), port


def _ascii_target(target: str) -> str:
    """Non-ASCII in a target percent-encoded as the bytes the client sent.

    mitmproxy gives undecodable bytes as surrogate escapes; a server sees the bytes.
    """
    if target.isascii():
        return target
    try:
        data = target.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise HostError(f"not a request-target: {target!r}") from exc
    return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in data)


def _has_dotdot(path: str) -> bool:
    """Whether some server could read a '..' segment in this path.

    Browsers resolve dot segments before they send a request, and servers disagree about
    the rest: nginx resolves '/a/../b' to /b where a Node app routes it under /a/, a
    backslash, %2F or %5C is a separator to some and a character to others, Tomcat drops
    the ';x' of '..;x', a few servers decode twice. No key can follow every reading, so
    such a path is refused. ('.' segments only drop out, which match_key covers.)
    """
    if ".." not in path and "%" not in path:
        return False
    for piece in PATH_PIECES.split(path):
        bare = piece.partition(";")[0]
        if "%" in bare:
            bare = unquote(unquote(bare))
        if bare == "..":
            return True
    return False


def request_url(scheme: str, host: str, port: int | None, target: str) -> CanonicalURL:
    """The URL of a request from its parsed parts; raises HostError for a bad part.

    `host` is a host name or IP literal only (IPv6 with or without brackets); `target` is
    the request-target as mitmproxy's `flow.request.path` gives it: a path starting with
    '/' (with an optional query), or '*' (OPTIONS), which is decided as the site's root.
    The path is ada-url's parse of the target alone, so it can never become authority and
    the host can never swallow it. Refused: a target that is not origin-form, one with a
    '#', space or control character, and one with a '..' segment in any spelling.
    """
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise HostError(f"not an http(s) request: {scheme!r}")
    if port is not None and not 0 <= port <= 65535:
        raise HostError(f"not a port: {port!r}")
    canonical = _host_only(host)
    if target == "*":
        target = "/"
    if not target.startswith("/") or _NOT_IN_TARGET.search(target):
        raise HostError(f"not an origin-form request-target: {target!r}")
    target = _ascii_target(target)
    if _has_dotdot(target.partition("?")[0]):
        raise HostError(
            f"a '..' in a request-target, which servers read in different ways: {target!r}"
        )
    try:
        parsed = ada_url.URL("http://h" + target)
    except ValueError as exc:
        raise HostError(f"not a request-target: {target!r}") from exc
    path, query = _path_and_query(parsed)
    return CanonicalURL(
        scheme=scheme,
        host=canonical,
        port=None if port == _DEFAULT_PORTS[scheme] else port,
        path=path,
        query=query,
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


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The Public Suffix List shipped with publicsuffixlist, private section included
    (github.io, s3.amazonaws.com: names under which anyone can have a site)."""
    return PublicSuffixList(only_icann=False)
