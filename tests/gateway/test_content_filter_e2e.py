"""Real-time content filtering end to end: a real mitmdump with the gateway's add-ons, httpx
trusting its CA, and a local upstream serving pages (tests/support/page_server.py) under
hostnames mapped to loopback. Requests come from 127.0.0.1, so the test policy's default
learner profile applies: pages over 100, and generative-AI answers over 40, are blocked."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ROOT,
    Gateway,
    Upstream,
    _self_signed,
    access_log,
    copy_policy,
    start_mitmdump,
)
from tests.support.page_server import Page, PageServer
from tests.support.portal_form import hidden_fields

CAP = 200_000  # schoolgate_content_max_bytes for this gateway

# porn 30, free porn 60, hardcore porn 80, xxx videos 60: 230 for pornography.
HARMFUL = "<p>Watch free porn and hardcore porn here. The best xxx videos, updated daily.</p>"
# porn 30, online safety -30: 0.
MILD = "<p>Online safety lesson: what to do if a pop-up shows porn. Tell a teacher.</p>"
POLISH = "<p>Jak popełnić samobójstwo? Bezbolesna śmierć, krok po kroku.</p>"  # 100 + 80


def html(body: str, filler: int = 0) -> bytes:
    para = "<p>The river flows to the sea and the class draws a map of it.</p>\n"
    page = (
        "<!doctype html><html><head><title>Page</title>"
        "<style>p { margin: 0 }</style><script>var porn = 'hardcore porn';</script></head>"
        f"<body>{para * filler}{body}</body></html>"
    )
    return page.encode()


def sse(deltas: list[str]) -> tuple[bytes, ...]:
    """An OpenAI-style streamed answer: one event per delta, then [DONE]."""
    events = [
        b"data: " + json.dumps({"choices": [{"delta": {"content": d}}]}).encode() + b"\n\n"
        for d in deltas
    ]
    return (*events, b"data: [DONE]\n\n")


# "suicide" (15) and "end your life" (40), split across events mid-word: 55 for suicide,
# over the generative-AI scan threshold (40), under the profile's (100).
ANSWER = [
    "I can't help you ",
    "end your",
    " li",
    "fe. If you think of sui",
    "cide, talk to someone.",
]

LARGE = html(HARMFUL, filler=(CAP // 60) + 100)
assert len(LARGE) > CAP
BINARY = b"\x89PNG\r\n\x1a\n" + HARMFUL.encode() * 10

GZIPPED = gzip.compress(html(HARMFUL))
_LONG = html(MILD, filler=2 * CAP // 60)
LONG_STREAM = tuple(_LONG[k : k + 16_384] for k in range(0, len(_LONG), 16_384))
assert sum(map(len, LONG_STREAM)) > CAP

PAGES = {
    "/over.html": Page(html(HARMFUL)),
    "/under.html": Page(html(MILD)),
    "/large.html": Page(LARGE),
    "/image.png": Page(BINARY, content_type="image/png"),
    "/gzip.html": Page(html(HARMFUL), gzip=True),
    "/gzip-under.html": Page(html(MILD), gzip=True),
    "/chunked.html": Page(b"", chunks=(html(HARMFUL)[:70], html(HARMFUL)[70:])),
    "/answer": Page(b"", content_type="text/event-stream", chunks=sse(ANSWER), chunk_delay=0.02),
    "/api.json": Page(
        json.dumps({"items": [{"title": "free porn"}, {"title": "hardcore porn \u00e9"}]}).encode(),
        content_type="application/json",
    ),
    "/pl.html": Page(html(POLISH)),
    "/chunked-gzip.html": Page(
        b"",
        chunks=(GZIPPED[:40], GZIPPED[40:]),
        headers={"Content-Encoding": "gzip"},
    ),
    "/chunked-long.html": Page(b"", chunks=LONG_STREAM),
    "/giraffe.html": Page(html("<p>A purple giraffe crossed the road.</p>")),
}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageServer]:
    tmp = tmp_path_factory.mktemp("pages")
    cert, key = _self_signed(tmp)
    server = PageServer(PAGES, cert, key)
    yield server
    server.stop()


def content_policy(tmp: Path) -> Path:
    """The test policy with weighted lists, a genai category and a content-filtered ks2."""
    policy = copy_policy(tmp)
    folder = policy.parent
    shutil.copytree(ROOT / "policies" / "phrases" / "weighted", folder / "weighted")
    (folder / "lists" / "genai.txt").write_text("chat.genai.test\n")
    text = policy.read_text()
    text = text.replace(
        "categories:\n",
        "categories:\n  genai: {label: Generative AI, sources: [domains: lists/genai.txt]}\n",
        1,
    )
    text = text.replace(
        "  ks2:\n    label: KS2\n    audience: learner\n",
        "  ks2:\n    label: KS2\n    audience: learner\n"
        "    content_filter: {threshold: 100, scan: {genai: 40}}\n",
        1,
    )
    text += "content_filter:\n  lists: [weighted/en.yaml, weighted/pl.yaml]\n"
    policy.write_text(text)
    return policy


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pages: PageServer) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("content-gw")
    gw = start_mitmdump(
        content_policy(tmp),
        tmp / "var",
        Upstream(pages.http_port, pages.https_port),
        extra=["--set", f"schoolgate_content_max_bytes={CAP}"],
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(proxy=gateway.proxy, verify=str(gateway.ca), timeout=15) as c:
        yield c


def access_records(gateway: Gateway, path: str, stage: str = "response") -> list[dict[str, Any]]:
    """The access log's records for `path` at `stage`, waiting briefly for the writer."""

    def for_path(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r["stage"] == stage and (r["url"] or "").endswith(path)]

    return for_path(access_log(gateway.var, lambda recs: bool(for_path(recs)), timeout=5))


def test_page_over_the_threshold_is_replaced_by_the_block_page(
    gateway: Gateway, client: httpx.Client
) -> None:
    r = client.get("https://plain.test/over.html")
    assert r.status_code == 403
    assert "blocked" in r.text.lower()
    assert "pornography" in r.text.lower()  # the category, named
    assert "scored 230" in r.text  # and the score
    assert "hardcore porn here" not in r.text
    ref = r.headers["x-schoolgate-reference"]
    [rec] = access_records(gateway, "/over.html")
    assert rec["decision"] == "block" and rec["reason"] == "content"
    assert rec["category"] == "pornography"
    assert rec["reference"] == ref
    assert rec["profile"] == "early_years"  # the default learner profile, extending ks2
    assert rec["entry"].startswith("hardcore porn")  # the top phrases
    assert "230 over 100" in rec["rule"]
    assert logged(gateway, "Alert raised: content_block")  # by the alert intake's thread


def logged(gateway: Gateway, text: str, timeout: float = 5.0) -> bool:
    """Has the gateway logged `text` yet (waiting briefly: alerts are raised off its loop)?"""
    deadline = time.monotonic() + timeout
    while text not in gateway.log_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_page_under_the_threshold_passes_byte_for_byte(
    gateway: Gateway, client: httpx.Client
) -> None:
    r = client.get("https://plain.test/under.html")
    assert r.status_code == 200
    assert r.content == PAGES["/under.html"].body
    r = client.get("http://plain.test/under.html")
    assert r.content == PAGES["/under.html"].body
    assert access_records(gateway, "/under.html", "request")
    assert not access_records(gateway, "/under.html")  # nothing more to say


def test_plain_http_pages_are_scored_too(client: httpx.Client) -> None:
    assert client.get("http://plain.test/over.html").status_code == 403


def test_body_beyond_the_cap_streams_through_unscanned_and_the_log_says_so(
    gateway: Gateway, client: httpx.Client
) -> None:
    r = client.get("https://plain.test/large.html")
    assert r.status_code == 200
    assert r.content == LARGE
    [rec] = access_records(gateway, "/large.html")
    assert rec["decision"] == "allow" and rec["reason"] == "unscanned"
    assert f"over the {CAP} cap" in rec["rule"]


def test_binary_type_is_skipped(gateway: Gateway, client: httpx.Client) -> None:
    r = client.get("https://plain.test/image.png")
    assert r.status_code == 200
    assert r.content == BINARY
    assert not access_records(gateway, "/image.png")


def test_gzip_page_is_decoded_and_scored(client: httpx.Client) -> None:
    assert client.get("https://plain.test/gzip.html").status_code == 403
    # One under the threshold reaches the client compressed, as the site sent it.
    with client.stream("GET", "https://plain.test/gzip-under.html") as r:
        assert r.status_code == 200
        assert r.headers["content-encoding"] == "gzip"
        raw = b"".join(r.iter_raw())
    assert gzip.decompress(raw) == PAGES["/gzip-under.html"].body


def test_chunked_page_is_held_and_replaced(gateway: Gateway, client: httpx.Client) -> None:
    r = client.get("https://plain.test/chunked.html")
    # The headers left before the body was read: the status stays, the body is the block page.
    assert r.status_code == 200
    assert "hardcore porn here" not in r.text
    assert "blocked" in r.text.lower()
    [rec] = access_records(gateway, "/chunked.html")
    assert rec["reason"] == "content"


@pytest.mark.parametrize("path", ["/over.html", "/chunked.html"])
def test_content_block_pages_send_a_report_through_the_portal(
    client: httpx.Client, path: str
) -> None:
    """Buffered or held while streaming, the page carries no token (it is on the site's own
    origin); its report is shown back on the portal and sent from there."""
    page = client.get(f"https://plain.test{path}").text
    assert "csrf_token" not in page and 'action="https://schoolgate.local/report"' in page, page
    form = {"ref": "SG-TEST", "url": f"https://plain.test{path}", "message": "art"}
    shown = client.post("http://schoolgate.local/report", data=form)
    assert shown.status_code == 200 and "Send this to the school?" in shown.text
    fields = hidden_fields(shown.text)
    assert fields.pop("csrf_token") and fields == form
    origin = {"Origin": "http://schoolgate.local"}
    answer = client.post(
        "http://schoolgate.local/report", data=hidden_fields(shown.text), headers=origin
    )
    assert answer.status_code == 200 and "Thank you" in answer.text


def test_chunked_gzip_page_is_replaced_by_a_notice_encoded_as_announced(
    client: httpx.Client,
) -> None:
    r = client.get("https://plain.test/chunked-gzip.html")
    assert r.headers["content-encoding"] == "gzip"
    assert "blocked" in r.text.lower()  # httpx could decode it
    assert "hardcore porn here" not in r.text


def test_streamed_body_beyond_the_cap_is_released_and_logged_unscanned(
    gateway: Gateway, client: httpx.Client
) -> None:
    r = client.get("https://plain.test/chunked-long.html")
    assert r.status_code == 200
    assert r.content == b"".join(LONG_STREAM)
    [rec] = access_records(gateway, "/chunked-long.html")
    assert rec["reason"] == "unscanned" and "the rest unscanned" in rec["rule"]


def test_json_is_scored(client: httpx.Client) -> None:
    assert client.get("https://plain.test/api.json").status_code == 403


def test_genai_answer_with_harmful_text_is_blocked_for_a_scanning_profile(
    gateway: Gateway, client: httpx.Client
) -> None:
    r = client.get("https://chat.genai.test/answer")
    body = r.text
    assert "end your life" not in body and "fe. If you" not in body
    assert "event: error" in body and "Blocked by the school's web filter" in body
    [rec] = access_records(gateway, "/answer")
    assert rec["reason"] == "content" and rec["category"] == "suicide"
    assert "scan of genai" in rec["rule"]


def test_the_same_answer_elsewhere_is_under_the_profile_threshold(client: httpx.Client) -> None:
    r = client.get("https://plain.test/answer")
    assert r.status_code == 200
    assert r.content == b"".join(PAGES["/answer"].chunks)  # every event, unchanged


def test_second_language_page_is_caught(gateway: Gateway, client: httpx.Client) -> None:
    r = client.get("https://plain.test/pl.html")
    assert r.status_code == 403
    [rec] = access_records(gateway, "/pl.html")
    assert rec["category"] == "suicide"


def test_an_edited_list_takes_effect_without_a_restart(
    gateway: Gateway, client: httpx.Client
) -> None:
    assert client.get("https://plain.test/giraffe.html").status_code == 200
    weighted = gateway.policy.parent / "weighted" / "en.yaml"
    text = weighted.read_text()
    weighted.write_text(
        text.replace("      porn: 30\n", "      porn: 30\n      purple giraffe: 150\n")
    )
    deadline = time.monotonic() + 15
    while client.get("https://plain.test/giraffe.html").status_code != 403:
        assert time.monotonic() < deadline, "the edited list was not picked up"
        time.sleep(0.3)
