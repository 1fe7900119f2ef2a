"""The termly check's YouTube safe-search case judges what YouTube really receives.

YouTube's restricted mode is a request header (`YouTube-Restrict: Strict`) the gateway adds;
nothing in YouTube's answer shows it, so a check that read only the page failed the case and
alerted the DSL while the gateway had done its job. Here a real mitmdump gateway sends
www.youtube.com to a local stand-in that answers like YouTube (the same page whatever it
got, no echo) and notes the headers it received; `schoolgate checks run` passes the case for
a profile with safe search and fails it for one without, and the stand-in confirms each. The
access log marks the check's visits as such.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.check_suite import Outcome
from proxy_addons.checks.records import load_runs
from proxy_addons.record.access_files import JSON_FILE
from proxy_addons.store import Store, store_url
from tests.conftest import (
    ROOT,
    VENV_BIN,
    Gateway,
    Upstream,
    _self_signed,
    copy_policy,
    start_mitmdump,
)

SUITE = """\
name: YouTube safe search
cases:
  - id: safe-search-youtube
    url: https://www.youtube.com/results?search_query=schoolgate+check
    category: safe_search
    expect: safe_search
"""
PAGE = b"<!doctype html><title>YouTube</title><p>Results for schoolgate check</p>"


@dataclass
class YouTube:
    """What the stand-in received: the headers of each request, in order."""

    port: int
    received: list[dict[str, str]] = field(default_factory=list)


def youtube_stand_in(tmp: Path) -> tuple[http.server.ThreadingHTTPServer, YouTube]:
    seen = YouTube(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            # An engine claiming safe search for itself is not believed.
            self.send_header("X-Schoolgate-Safe-Search", "on")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, format: str, *args: object) -> None:
            pass

    cert, key = _self_signed(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    seen.port = server.server_address[1]
    return server, seen


@dataclass
class Setup:
    gateway: Gateway
    youtube: YouTube

    def run_check(self, profile: str) -> subprocess.CompletedProcess[str]:
        common = ["--policy", str(self.gateway.policy), "--var", str(self.gateway.var)]
        return subprocess.run(
            [str(VENV_BIN / "schoolgate"), "checks", "run", "--profile", profile, "--by", "tech"]
            + ["--proxy", self.gateway.proxy, *common],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    def newest_result(self) -> tuple[Outcome, str]:
        store = Store.open(store_url(self.gateway.var))
        try:
            [result] = load_runs(store)[0].run.results
        finally:
            store.dispose()
        return result.outcome, result.evidence


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("youtube-check")
    policy = copy_policy(tmp)
    (policy.parent / "checks.yaml").write_text(SUITE)
    text = policy.read_text()
    staff = "    audience: staff\n"
    text = text.replace(staff, staff + "    safe_search: off\n", 1)  # staff: no safe search
    text += "checks:\n  suite: checks.yaml\n  remind: [tech]\n  profiles: [ks2, staff]\n"
    policy.write_text(text)
    server, youtube = youtube_stand_in(tmp)
    gw = start_mitmdump(
        policy,
        tmp / "var",
        upstream,
        extra=["--set", f"local_upstream_hosts=www.youtube.com=127.0.0.1:{youtube.port}"],
    )
    deadline = time.monotonic() + 15  # the token is written when the add-ons are configured
    while not (gw.var / "check-token").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Setup(gw, youtube)
    finally:
        gw.stop()
        server.shutdown()
        server.server_close()


def test_the_case_passes_when_youtube_received_the_restrict_header(setup: Setup) -> None:
    result = setup.run_check("ks2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert setup.youtube.received[-1].get("youtube-restrict") == "Strict"  # what YouTube got
    outcome, evidence = setup.newest_result()
    assert outcome is Outcome.PASS and "safe search enforced" in evidence


def test_the_case_fails_when_youtube_did_not(setup: Setup) -> None:
    result = setup.run_check("staff")
    assert "1 failed" in result.stdout, result.stdout + result.stderr
    assert "youtube-restrict" not in setup.youtube.received[-1]  # the gateway sent none
    outcome, evidence = setup.newest_result()
    assert outcome is Outcome.FAIL and "safe search not enforced" in evidence


def test_the_access_log_marks_the_check_s_visits(setup: Setup) -> None:
    path = setup.gateway.var / JSON_FILE
    deadline = time.monotonic() + 20  # the writer flushes every few seconds
    found: list[dict[str, object]] = []
    while len(found) < 2 and time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [r for r in map(json.loads, lines) if r["host"] == "www.youtube.com"]
        time.sleep(0.1)
    assert len(found) >= 2 and all(r["check_visit"] is True for r in found)
    assert {r["profile"] for r in found} == {"ks2", "staff"}
