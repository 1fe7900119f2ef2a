"""Reading a header for a microsecond, not ten.

mitmproxy's `Headers.get` goes through the Mapping ABC, converts the name, and lower-cases
every field's name on the way; the gateway reads a handful of headers on every request, in
several add-ons. `header` reads the raw fields once, with the same result as `get`: the
values of every field of that name (in any case), decoded as mitmproxy decodes them and
folded with ", " (RFC 9110).
"""

from __future__ import annotations

from mitmproxy.http import Headers


def header(headers: Headers, name: bytes, default: str = "") -> str:
    """`headers.get(name, default)`; `name` is lower-case bytes (b"content-type")."""
    found = [value for key, value in headers.fields if key.lower() == name]
    if not found:
        return default
    if len(found) == 1:
        return found[0].decode("utf-8", "surrogateescape")
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in found)


def has_header(headers: Headers, name: bytes) -> bool:
    """`name in headers`; `name` is lower-case bytes."""
    return any(key.lower() == name for key, _ in headers.fields)
