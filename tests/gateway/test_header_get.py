"""The quick header reader gives what mitmproxy's `Headers.get` gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.http import Headers

from proxy_addons.gateway.headers import has_header, header

NAMES = [b"Content-Type", b"content-type", b"CONTENT-TYPE", b"Accept", b"X-Other", b"Host"]
VALUES = [b"text/html", b"", b"a, b", b"caf\xc3\xa9", b"\xff\xfe", b" spaced "]


@given(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=8))
def test_same_as_mitmproxy(fields: list[tuple[bytes, bytes]]) -> None:
    headers = Headers(fields)
    for name in (b"content-type", b"accept", b"x-other", b"missing"):
        assert header(headers, name) == headers.get(name.decode(), "")
        assert header(headers, name, "none") == headers.get(name.decode(), "none")
        assert has_header(headers, name) == (name.decode() in headers)


@given(
    st.sampled_from([b"HTTP/1.1", b"HTTP/2.0"]),
    st.sampled_from([b"", b"example.test", b"EXAMPLE.test:8080"]),
    st.sampled_from(["", "school.test", "other.test:443"]),
)
def test_host_header_as_mitmproxy(version: bytes, host: bytes, authority: str) -> None:
    from mitmproxy.test import tutils

    from proxy_addons.gateway.headers import host_header

    request = tutils.treq(http_version=version, authority=authority.encode())
    request.headers.pop("host", None)
    if host:
        request.headers["Host"] = host.decode()
    assert host_header(request) == request.host_header
