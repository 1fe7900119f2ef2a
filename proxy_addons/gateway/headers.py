"""Reading a header for a microsecond, not ten.

mitmproxy's `Headers.get` goes through the Mapping ABC, converts the name, and lower-cases
every field's name on the way; the gateway reads a handful of headers on every request, in
several add-ons. `header` reads the raw fields once, with the same result as `get`: the
values of every field of that name (in any case), decoded as mitmproxy decodes them and
folded with ", " (RFC 9110).
"""

from __future__ import annotations

from mitmproxy.http import Headers, Request


def header(headers: Headers, name: bytes, default: str = "") -> str:
    """`headers.get(name, default)`; `name` is lower-case bytes (b"content-type")."""
    found: bytes | None = None
    more: list[bytes] = []
    for key, value in headers.fields:
        if key.lower() == name:
            if found is None:
                found = value
            else:
                more.append(value)
    if found is None:
        return default
    if not more:
        return found.decode("utf-8", "surrogateescape")
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in (found, *more))


def has_header(headers: Headers, name: bytes) -> bool:
    """`name in headers`; `name` is lower-case bytes."""
    for key, _ in headers.fields:
        if key.lower() == name:
            return True
    return False


def host_header(request: Request) -> str | None:
    """`request.host_header`: the authority for HTTP/2 and 3, else the Host header."""
    if (request.is_http2 or request.is_http3) and request.authority:
        return request.authority
    found = header(request.headers, b"host")
    return found or None
