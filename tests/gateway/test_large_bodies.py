"""Large bodies through a real mitmdump: uploads and downloads stream through without being
held in the gateway (mitmproxy's stream flags and the bytes it kept, seen by a probe add-on
after the gateway's), and a large page's head is still scanned: a bad head is cut, a clean
one passes with the rest unscanned, an unreadable body is blocked. Memory figures are in
bench/large_bodies_bench.py, not here."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from proxy_addons.core.content.page_text import Decoder
from proxy_addons.gateway.addons.content_filter import MIN_STREAM_BYTES, ContentFiltering
from proxy_addons.gateway.services import Services
from tests.conftest import ROOT, Gateway, Upstream, _self_signed, access_log, start_mitmdump
from tests.gateway.test_content_filter_e2e import HARMFUL, MILD, content_policy
from tests.support.bulk_server import BulkServer, body_blocks, body_sha256

CAP = 1_000_000  # schoolgate_content_max_bytes, and so the default stream_large_bodies
MB = 1 << 20


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BulkServer]:
    cert, key = _self_signed(tmp_path_factory.mktemp("bulk"))
    server = BulkServer(cert, key)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, bulk: BulkServer) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("bodies-gw")
    gw = start_mitmdump(
        content_policy(tmp),
        tmp / "var",
        Upstream(bulk.http_port, bulk.https_port),
        extra=[
            "--set",
            f"schoolgate_content_max_bytes={CAP}",
            "-s",
            str(ROOT / "tests" / "support" / "body_probe.py"),
            "--set",
            f"body_probe_file={tmp / 'probe.jsonl'}",
        ],
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(proxy=gateway.proxy, verify=str(gateway.ca), timeout=120) as c:
        yield c


def probe(gateway: Gateway, path: str) -> dict[str, Any]:
    """The probe's line for the flow whose path starts with `path` (waits for it)."""
    file = gateway.var.parent / "probe.jsonl"

    def found() -> list[dict[str, Any]]:
        lines = file.read_text().splitlines() if file.exists() else []
        return [r for r in map(json.loads, lines) if str(r.get("path", "")).startswith(path)]

    access_log(gateway.var, lambda _: bool(found()), timeout=10)  # its wait, for our file
    [record] = found()
    return record


def content_records(gateway: Gateway, tag: str) -> list[dict[str, Any]]:
    def mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r["stage"] == "response" and tag in (r["url"] or "")]

    return mine(access_log(gateway.var, lambda recs: bool(mine(recs)), timeout=10))


def download(client: httpx.Client, url: str) -> tuple[httpx.Response, str, int]:
    digest, length = hashlib.sha256(), 0
    with client.stream("GET", url) as response:
        for block in response.iter_bytes():
            digest.update(block)
            length += len(block)
    return response, digest.hexdigest(), length


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_large_upload_streams_through_unheld(
    gateway: Gateway, client: httpx.Client, framing: str, scheme: str
) -> None:
    size = 24 * MB
    blocks = list(body_blocks(size, "bin"))
    body: bytes | Iterator[bytes] = b"".join(blocks) if framing == "length" else iter(blocks)
    tag = f"/upload-{framing}-{scheme}"
    r = client.post(f"{scheme}://plain.test{tag}", content=body)
    assert r.status_code == 200
    assert r.json() == {"length": size, "sha256": body_sha256(size, "bin")}
    seen = probe(gateway, tag)
    assert seen["request_stream"] is True and seen["request_held"] is None


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_a_large_download_streams_through_unheld(
    gateway: Gateway, client: httpx.Client, chunked: str
) -> None:
    size = 24 * MB
    tag = f"/file-{chunked}.bin"
    response, sha, length = download(
        client, f"https://plain.test{tag}?type=bin&size={size}&chunked={chunked}"
    )
    assert response.status_code == 200
    assert (length, sha) == (size, body_sha256(size, "bin"))
    seen = probe(gateway, tag)
    assert seen["response_stream"] is True and seen["response_held"] is None


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_a_large_page_with_a_bad_head_is_cut(
    gateway: Gateway, client: httpx.Client, chunked: str
) -> None:
    tag = f"/bad-head-{chunked}.html"
    url = f"https://plain.test{tag}?size={16 * MB}&chunked={chunked}&head={HARMFUL}"
    response = client.get(url)
    # The headers left before the head was read: the status stays, the body is the notice.
    assert response.status_code == 200 and "content-length" not in response.headers
    assert len(response.content) < 100_000
    text = response.text
    assert "blocked" in text.lower() and "hardcore porn here" not in text
    assert "The river flows" not in text  # none of the page got out
    [record] = content_records(gateway, tag)
    assert record["decision"] == "block" and record["reason"] == "content"
    seen = probe(gateway, tag)
    assert seen["response_stream"] == "HeldBody" and seen["response_held"] is None


def test_a_large_page_with_a_clean_head_passes_whole_and_the_log_says_the_rest_was_unscanned(
    gateway: Gateway, client: httpx.Client
) -> None:
    size, tag = 16 * MB, "/clean-head.html"
    response, sha, length = download(client, f"http://plain.test{tag}?size={size}&head={MILD}")
    assert response.status_code == 200
    assert (length, sha) == (size, body_sha256(size, "html", MILD.encode()))
    [record] = content_records(gateway, tag)
    assert record["reason"] == "unscanned" and f"over the {CAP} cap" in record["rule"]
    assert probe(gateway, tag)["response_stream"] == "HeldBody"


@pytest.mark.parametrize(("head", "status"), [(MILD, 200), (HARMFUL, 403)])
def test_a_compression_bomb_is_read_only_up_to_the_cap(
    gateway: Gateway, client: httpx.Client, head: str, status: int
) -> None:
    """64 MB of page in about 100 KB of gzip: buffered (small), decoded only to the cap."""
    tag = f"/bomb-{status}.html"
    r = client.get(f"https://plain.test{tag}?size={64 * MB}&enc=gzip&head={head}")
    assert r.status_code == status
    [record] = content_records(gateway, tag)
    if status == 200:
        assert record["reason"] == "unscanned" and "decoded body over" in record["rule"]
    else:
        assert record["reason"] == "content"


@pytest.mark.parametrize("enc", ["x-unknown", "gzip, x-unknown", "compress"])
@pytest.mark.parametrize("chunked", ["0", "1"])
def test_a_body_the_filter_cannot_read_is_blocked_not_passed(
    gateway: Gateway, client: httpx.Client, enc: str, chunked: str
) -> None:
    tag = f"/unreadable-{enc.replace(', ', '-')}-{chunked}.html"
    r = client.get(f"https://plain.test{tag}?size=5000&enc={enc}&chunked={chunked}&head={MILD}")
    assert r.status_code == 403 and "could not be checked" in r.text
    assert "The river flows" not in r.text
    [record] = content_records(gateway, tag)
    assert record["decision"] == "block" and "can't be read" in record["rule"]


def test_stacked_encodings_are_read(gateway: Gateway, client: httpx.Client) -> None:
    """A browser undoes "gzip, gzip" too: the page is read, and blocked."""
    r = client.get(f"https://plain.test/stacked.html?size=5000&enc=gzip,%20gzip&head={HARMFUL}")
    assert r.status_code == 403 and "scored 230" in r.text


def test_the_gateway_sets_stream_large_bodies_to_the_cap(gateway: Gateway) -> None:
    file = gateway.var.parent / "probe.jsonl"
    wanted = {"stream_large_bodies": str(CAP)}

    def lines() -> list[dict[str, Any]]:
        return [json.loads(x) for x in file.read_text().splitlines()] if file.exists() else []

    access_log(gateway.var, lambda _: wanted in lines(), timeout=10)  # its wait, for our file
    assert wanted in lines()


def test_the_default_follows_the_cap_unless_the_operator_set_one() -> None:
    addon = ContentFiltering(Services())  # no policy: only its options are used
    with taddons.context(Proxyserver(), addon) as tctx:  # Proxyserver declares the option
        tctx.configure(addon, schoolgate_content_max_bytes=2_000_000)  # as at start-up
        assert tctx.options.stream_large_bodies == "2000000"  # the default cap
        tctx.configure(addon, schoolgate_content_max_bytes=5_000_000)
        assert tctx.options.stream_large_bodies == "5000000"  # follows the cap it set
        tctx.configure(addon, schoolgate_content_max_bytes=10)
        assert tctx.options.stream_large_bodies == str(MIN_STREAM_BYTES)
        tctx.configure(addon, stream_large_bodies="50m")  # the operator's own
        tctx.configure(addon, schoolgate_content_max_bytes=3_000_000)
        assert tctx.options.stream_large_bodies == "50m"


@pytest.mark.parametrize("coding", ["gzip", "gzip, gzip", "deflate", "br", "zstd", ""])
def test_decoding_stops_at_the_limit(coding: str) -> None:
    import brotli
    from backports import zstd

    data = b"<p>" + b"a" * (8 * MB) + b"</p>"
    packed = data
    for name in [n.strip() for n in coding.split(",") if n.strip()]:
        packed = {
            "gzip": gzip.compress,
            "deflate": __import__("zlib").compress,
            "br": brotli.compress,
            "zstd": zstd.compress,
        }[name](packed)
    decoder = Decoder(coding)
    pieces = [decoder.decompress(packed[k : k + 4096], 1000) for k in range(0, len(packed), 4096)]
    out = b"".join(pieces)
    assert out == data[: len(out)] and 0 < len(out) < len(data)  # a prefix, then nothing
    assert all(len(p) <= 1000 for p in pieces) and decoder.cut
    first = Decoder(coding).decompress(packed, 1000)
    assert first == data[:1000]
    assert Decoder(coding).decompress(packed) == data  # no limit: all of it


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_large_upload_to_a_blocked_site_goes_nowhere(
    gateway: Gateway, client: httpx.Client, bulk: BulkServer, framing: str
) -> None:
    """mitmproxy can't answer a request and stream its body: the connection is closed."""
    blocks = list(body_blocks(8 * MB, "bin"))
    body: bytes | Iterator[bytes] = b"".join(blocks) if framing == "length" else iter(blocks)
    tag = f"/blocked-upload-{framing}"
    try:
        r = client.post(f"http://chatter.test{tag}", content=body)
    except httpx.TransportError:
        pass  # closed while it was still sending
    else:
        assert r.status_code != 200 and "sha256" not in r.text
    small = client.post(f"http://chatter.test{tag}-small", content=b"a=1")
    assert small.status_code == 403  # a small one still gets the block page
    assert not [path for path in bulk.uploads if path.startswith(tag)]  # nothing arrived


def test_connections_closed_for_blocked_uploads_are_not_left_open(gateway: Gateway) -> None:
    """A pupil looping uploads to a blocked site must not use up the gateway's sockets: the
    kill ends the connection while its data still flows (mitm_fixes.py)."""
    mine: set[int] = set()  # the client ports of these connections (the module's client
    for n in range(8):  # keeps its own connections open)
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
            mine.add(s.getsockname()[1])
            framing = b"Transfer-Encoding: chunked" if n % 2 else b"Content-Length: 25165824"
            s.sendall(b"POST http://chatter.test/loop HTTP/1.1\r\nHost: chatter.test\r\n")
            s.sendall(framing + b"\r\n\r\n")
            block = b"x" * 65536
            try:
                for _ in range(384):
                    s.sendall(b"10000\r\n" + block + b"\r\n" if n % 2 else block)
            except OSError:
                pass  # closed on us: as it should be
    process = psutil.Process(gateway.process.pid)

    def open_connections() -> list[Any]:
        return [
            c
            for c in process.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == gateway.port and c.raddr and c.raddr.port in mine
        ]

    access_log(gateway.var, lambda _: not open_connections(), timeout=15)  # its wait
    assert open_connections() == []


@pytest.mark.parametrize("version", ["--http1.0", "--http1.1", "--http2"])
def test_a_held_page_is_framed_for_each_http_version(
    gateway: Gateway, tmp_path: Path, version: str
) -> None:
    """Its length can't be promised: chunked for HTTP/1.1, until the close for 1.0."""
    size, tag = 4 * MB, f"/framed{version.replace('--', '-')}.html"
    out = tmp_path / "page.html"
    url = f"https://plain.test{tag}?size={size}&head={quote(MILD)}"
    result = gateway.curl(url, version, "-o", str(out))
    assert result.stdout.strip().endswith("200"), result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == body_sha256(size, "html", MILD.encode())
