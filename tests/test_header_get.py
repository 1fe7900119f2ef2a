"""The quick header reader gives what mitmproxy's `Headers.get` gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.http import Headers

from proxy_addons.header_get import has_header, header

NAMES = [b"Content-Type", b"content-type", b"CONTENT-TYPE", b"Accept", b"X-Other", b"Host"]
VALUES = [b"text/html", b"", b"a, b", b"caf\xc3\xa9", b"\xff\xfe", b" spaced "]


@given(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=8))
def test_same_as_mitmproxy(fields: list[tuple[bytes, bytes]]) -> None:
    headers = Headers(fields)
    for name in (b"content-type", b"accept", b"x-other", b"missing"):
        assert header(headers, name) == headers.get(name.decode(), "")
        assert header(headers, name, "none") == headers.get(name.decode(), "none")
        assert has_header(headers, name) == (name.decode() in headers)
