"""Match keys: URL entries and requests compared as lenient servers read paths.

A list's URL entry must cover every request some common server would answer with the
same resource, so entries and requests are compared by one key: the path with repeated
slashes merged, backslashes and %2F/%5C as slashes (IIS, nginx), ';parameters' dropped
(Tomcat, Jetty), every escape decoded and re-encoded one way, dot segments resolved and
no trailing slash. The illegal tier also folds case (IIS, case-insensitive file systems).
A key may merge paths a strict server tells apart: over-blocking by a hair, never a miss.
Canonical hosts and URLs themselves are `hosts.py`.
"""

from __future__ import annotations

import re

from proxy_addons.core.hosts import ESCAPE, PATH_PIECES, UNRESERVED

# Bytes a key leaves as they are (RFC 3986 pchar but ';'): the rest are %XX, upper case.
_KEPT = UNRESERVED | frozenset(b"!$&'()*+,=:@")
_KEPT_PIECE = re.compile(r"[A-Za-z0-9\-_~!$&'()*+,=:@.]*")
_BYTE_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_KEY_HOST_END = re.compile(r"[/?]")


def _unescape(m: re.Match[bytes]) -> bytes:
    return bytes([int(m.group(1), 16)])


def _piece_key(piece: str, fold_case: bool) -> str:
    """One path segment as the key writes it: parameters dropped, one encoding."""
    piece = piece.partition(";")[0]
    if _KEPT_PIECE.fullmatch(piece):
        return piece
    data = _BYTE_ESCAPE.sub(_unescape, piece.encode(errors="surrogatepass"))
    if fold_case and not data.isascii():
        try:
            data = data.decode().lower().encode()
        except UnicodeDecodeError:
            pass
    return "".join(chr(b) if b in _KEPT else f"%{b:02X}" for b in data)


def match_key(url: str, *, fold_case: bool = False) -> str:
    """The key URL entries and requests are matched by: `host[/path][?query]`.

    `url` is an entry as canonical_url_entry writes it, or a request's host followed by
    its canonical path and query. Prefix entries cover a request when its key equals
    theirs or continues it at a '/' or '?' (url_prefix_match). The query is kept as it is
    (an exact entry without one also covers the URL with any query).
    """
    rest, _, query = url.partition("?")
    host, _, path = rest.partition("/")
    segments: list[str] = []
    for piece in PATH_PIECES.split(path):
        key = _piece_key(piece, fold_case)
        if key == "..":
            if segments:
                segments.pop()
        elif key and key != ".":
            segments.append(key)
    out = host + "".join("/" + s for s in segments) + ("?" + query if query else "")
    return out.lower() if fold_case else out


def illegal_key(url: str) -> str:
    """match_key for the illegal tier: the path as the most lenient chain of servers reads
    it, on top of match_key's case folding. ASCII escapes decoded up to three times (a
    proxy, then an app: `%2570` is `p`, `%252f` a slash, `%3B` a ';'), a '?' so decoded
    starting the query, and each segment as Windows opens a file: cut at a NUL or ';',
    trailing dots and spaces and the `::$DATA` stream dropped. Entries and requests both
    go through it, so they can't disagree; over-blocking by a hair is the price."""
    rest, _, query = url.partition("?")
    host, _, path = rest.partition("/")
    path, _, more = _decode_deep(path).partition("?")
    pieces = [_windows_name(p.partition("\x00")[0].partition(";")[0]) for p in _SLASHES.split(path)]
    query = query or more
    return match_key(host + "/" + "/".join(pieces) + (f"?{query}" if query else ""), fold_case=True)


def _decode_deep(path: str) -> str:
    for _ in range(3):
        decoded = ESCAPE.sub(_ascii_unescape, path)
        if decoded == path:
            break
        path = decoded
    return path


def _ascii_unescape(m: re.Match[str]) -> str:
    """An escape of an ASCII byte decoded; others (UTF-8) left for match_key's one form."""
    byte = int(m.group(1), 16)
    return chr(byte) if byte < 0x80 else m.group(0)


def _windows_name(piece: str) -> str:
    """Trailing dots and spaces and the default `::$DATA` stream dropped, as Windows opens
    a file (IIS); `.` and `..` left for match_key to resolve."""
    if piece.lower().endswith("::$data"):
        piece = piece[: -len("::$data")]
    if piece in (".", ".."):
        return piece
    return piece.rstrip(". ") or piece


_SLASHES = re.compile(r"[/\\]")


def key_host(key: str) -> str:
    """The host a match key (or a canonical URL entry) names."""
    end = _KEY_HOST_END.search(key)
    return key[: end.start()] if end else key
