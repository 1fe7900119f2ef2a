"""Safe search through a real mitmdump gateway, with local stand-ins for the engines.

Every upstream host name is mapped to loopback (tests/support/local_upstream.py): the
engines themselves to one echo server, each enforced endpoint (forcesafesearch.google.com,
strict.bing.com, ...) to a stand-in of its own, so a test sees which one a connection
reached, with the SNI and Host the client sent and the request as it arrived.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.record.access_files import JSON_FILE
from tests.conftest import Gateway, Upstream, _self_signed, copy_policy, start_mitmdump
from tests.gateway.test_alerting_e2e import _htpasswd, wait_for

USERS = {"pupil": "p-pass", "sixth": "s-pass", "teacher": "t-pass"}
ENDPOINTS = (
    "forcesafesearch.google.com",
    "strict.bing.com",
    "safe.duckduckgo.com",
    "restrict.youtube.com",
    "restrictmoderate.youtube.com",
)
HOST_ONLY = "[google.co.uk, bing.com, duckduckgo.com, youtube.com, yandex.com]"


class _Echo(http.server.BaseHTTPRequestHandler):
    """Says which stand-in answered, the SNI it was reached with, and the request it saw."""

    def do_GET(self) -> None:
        payload = json.dumps(
            {
                "server": self.server.name,  # type: ignore[attr-defined]
                "sni": getattr(self.connection, "sni", None),
                "host": self.headers.get("Host"),
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class StandIns:
    upstream: Upstream  # the engines' own addresses (plain and TLS)
    ports: dict[str, int]  # each enforced endpoint's stand-in
    servers: list[http.server.ThreadingHTTPServer]

    @property
    def host_map(self) -> list[str]:
        mapping = ",".join(f"{name}=127.0.0.1:{port}" for name, port in self.ports.items())
        return ["--set", f"local_upstream_hosts={mapping}"]


def _server(name: str, tls: ssl.SSLContext | None) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.name = name  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def _tls(tmp: Path) -> ssl.SSLContext:
    cert, key = _self_signed(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def remember_sni(sock: Any, name: str | None, _: ssl.SSLContext) -> None:
        sock.sni = name

    ctx.sni_callback = remember_sni
    return ctx


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIns]:
    tls = _tls(tmp_path_factory.mktemp("engines"))
    plain, secure = _server("engine", None), _server("engine", tls)
    ends = {name: _server(name, tls) for name in ENDPOINTS}
    yield StandIns(
        Upstream(plain.server_address[1], secure.server_address[1]),
        {name: s.server_address[1] for name, s in ends.items()},
        [plain, secure, *ends.values()],
    )
    for server in (plain, secure, *ends.values()):
        server.shutdown()
        server.server_close()


def policy_for_engines(tmp: Path, *, host_only: bool = False, extra: str = "") -> Path:
    """The test policy with sign-in, a moderate sixth form and staff without safe search."""
    policy = copy_policy(tmp)
    _htpasswd(policy.parent / "users.htpasswd", USERS)
    text = policy.read_text()
    text = text.replace("identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:")
    text = text.replace("pupil: ks2,", "pupil: ks2, sixth: sixth_form,")
    staff = "    audience: staff\n"
    text = text.replace(staff, staff + "    safe_search: off\n    allow_circumvention: [doh]\n", 1)
    if host_only:
        text = text.replace(
            "  host_only: {categories: [banking]}",
            f"  host_only: {{categories: [banking], domains: {HOST_ONLY}}}",
        )
    text += (
        "  sixth_form:\n"
        "    label: Sixth form\n"
        "    audience: learner\n"
        "    extends: ks2\n"
        "    safe_search: moderate\n"
    )
    policy.write_text(text + extra)
    return policy


@pytest.fixture(scope="module")
def decrypting(tmp_path_factory: pytest.TempPathFactory, stand_ins: StandIns) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("safe-decrypt")
    gw = start_mitmdump(
        policy_for_engines(tmp), tmp / "var", stand_ins.upstream, extra=stand_ins.host_map
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def host_only(tmp_path_factory: pytest.TempPathFactory, stand_ins: StandIns) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("safe-host-only")
    policy = policy_for_engines(tmp, host_only=True)
    gw = start_mitmdump(policy, tmp / "var", stand_ins.upstream, extra=stand_ins.host_map)
    yield gw
    gw.stop()


def fetch(gw: Gateway, url: str, user: str, *args: str) -> tuple[int, Any]:
    result = gw.curl(url, *args, user=f"{user}:{USERS[user]}")
    body, _, code = result.stdout.rpartition("\n")
    try:
        return int(code or 0), json.loads(body)
    except ValueError:
        return int(code or 0), body


def passthrough(gw: Gateway, url: str, user: str) -> subprocess.CompletedProcess[str]:
    """curl through the gateway to a site it does not decrypt: TLS is the stand-in's own."""
    cmd = ["curl", "-sS", "--max-time", "10", "-x", gw.proxy, "-k"]
    cmd += ["--proxy-user", f"{user}:{USERS[user]}", "-w", "\n%{http_code}", url]
    return subprocess.run(cmd, capture_output=True, text=True)


def log_records(gw: Gateway) -> list[dict[str, Any]]:
    path = gw.var / JSON_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- decrypted and plain traffic: rewritten ---------------------------------------------------

STRICT_CASES = [
    ("https://www.google.com/search?q=cats&safe=off", "/search?q=cats&safe=active"),
    ("https://www.google.co.uk/search?q=cats&tbm=isch", "/search?q=cats&tbm=isch&safe=active"),
    ("https://www.bing.com/search?q=cats&adlt=off", "/search?q=cats&adlt=strict"),
    ("https://www.bing.com/images/search?q=cats", "/images/search?q=cats&adlt=strict"),
    ("http://www.bing.com/search?q=cats", "/search?q=cats&adlt=strict"),
    ("https://duckduckgo.com/?q=cats&kp=-2", "/?q=cats&kp=1"),
    ("https://duckduckgo.com/i.js?q=cats&o=json", "/i.js?q=cats&o=json&kp=1"),
]


@pytest.mark.parametrize(("url", "arrives"), STRICT_CASES)
def test_searches_arrive_rewritten_for_a_strict_profile(
    decrypting: Gateway, url: str, arrives: str
) -> None:
    code, seen = fetch(decrypting, url, "pupil")
    assert code == 200, seen
    assert seen["server"] == "engine" and seen["path"] == arrives


@pytest.mark.parametrize(("url", "arrives"), STRICT_CASES)
def test_searches_arrive_untouched_for_a_profile_without_safe_search(
    decrypting: Gateway, url: str, arrives: str
) -> None:
    code, seen = fetch(decrypting, url, "teacher")
    assert code == 200, seen
    assert seen["path"] == url.split(seen["host"], 1)[1]  # exactly as sent


def test_youtube_gets_the_restrict_header_by_profile(decrypting: Gateway) -> None:
    url = "https://www.youtube.com/results?search_query=cats"
    contrary = ("-H", "YouTube-Restrict: Off")
    _, strict = fetch(decrypting, url, "pupil", *contrary)
    _, moderate = fetch(decrypting, url, "sixth", *contrary)
    _, off = fetch(decrypting, url, "teacher", *contrary)
    assert strict["headers"]["youtube-restrict"] == "Strict"
    assert moderate["headers"]["youtube-restrict"] == "Moderate"
    assert off["headers"]["youtube-restrict"] == "Off"  # untouched
    assert strict["path"] == "/results?search_query=cats"


def test_moderate_profile_gets_the_engines_moderate_settings(decrypting: Gateway) -> None:
    _, bing = fetch(decrypting, "https://www.bing.com/search?q=cats", "sixth")
    _, ddg = fetch(decrypting, "https://duckduckgo.com/?q=cats", "sixth")
    _, google = fetch(decrypting, "https://www.google.com/search?q=cats", "sixth")
    assert bing["path"].endswith("adlt=moderate") and ddg["path"].endswith("kp=-1")
    assert google["path"].endswith("safe=active")  # Google has no enforced moderate


def test_engine_without_safe_search_is_blocked_only_where_safe_search_is_needed(
    decrypting: Gateway,
) -> None:
    code, page = fetch(decrypting, "https://yandex.com/search/?text=cats", "pupil")
    assert code == 403 and "cannot be kept to safe search" in page
    code, seen = fetch(decrypting, "https://yandex.com/search/?text=cats", "teacher")
    assert code == 200 and seen["server"] == "engine"


def test_the_access_log_notes_the_enforcement(decrypting: Gateway) -> None:
    fetch(decrypting, "https://www.bing.com/search?q=logged+search", "pupil")

    def found() -> list[dict[str, Any]]:
        return [
            r
            for r in log_records(decrypting)
            if r["search_term"] == "logged search" and r["stage"] == "request"
        ]

    [record] = wait_for(found)
    assert record["enforced"] == "safe_search=strict (bing)"
    assert record["url"] == "https://www.bing.com/search?q=logged+search"  # as the user asked


# -- host-name-only traffic: steered ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "user", "endpoint"),
    [
        ("https://www.google.co.uk/search?q=cats&safe=off", "pupil", "forcesafesearch.google.com"),
        ("https://www.bing.com/search?q=cats", "pupil", "strict.bing.com"),
        ("https://duckduckgo.com/?q=cats", "pupil", "safe.duckduckgo.com"),
        ("https://www.youtube.com/results?search_query=cats", "pupil", "restrict.youtube.com"),
        ("https://m.youtube.com/", "sixth", "restrictmoderate.youtube.com"),
    ],
)
def test_host_only_traffic_is_steered_to_the_enforced_endpoint(
    host_only: Gateway, url: str, user: str, endpoint: str
) -> None:
    result = passthrough(host_only, url, user)
    body, _, code = result.stdout.rpartition("\n")
    assert code == "200", result.stderr
    seen = json.loads(body)
    host = url.split("/")[2]
    assert seen["server"] == endpoint  # connected to the endpoint's stand-in
    assert seen["sni"] == host and seen["host"] == host  # the client's own TLS and Host
    assert seen["path"] == url.split(host, 1)[1]  # not decrypted, so not rewritten


def test_host_only_traffic_goes_to_the_engine_for_a_profile_without_safe_search(
    host_only: Gateway,
) -> None:
    result = passthrough(host_only, "https://www.google.co.uk/search?q=cats", "teacher")
    seen = json.loads(result.stdout.rpartition("\n")[0])
    assert seen["server"] == "engine" and seen["sni"] == "www.google.co.uk"


@pytest.mark.parametrize("url", ["https://cn.bing.com/search?q=x", "https://yandex.com/"])
def test_engine_hosts_that_cannot_be_steered_are_refused(host_only: Gateway, url: str) -> None:
    result = passthrough(host_only, url, "pupil")
    assert result.returncode != 0 and not result.stdout.rpartition("\n")[0]
    assert passthrough(host_only, url, "teacher").returncode == 0


def test_the_access_log_notes_the_steering(host_only: Gateway) -> None:
    passthrough(host_only, "https://duckduckgo.com/?q=x", "pupil")

    def found() -> list[dict[str, Any]]:
        return [
            r
            for r in log_records(host_only)
            if r["host"] == "duckduckgo.com" and r["stage"] == "tls" and r["user"] == "pupil"
        ]

    record = wait_for(found)[0]
    assert record["enforced"] == "safe_search=strict via safe.duckduckgo.com"
    assert record["decision"] == "allow" and record["url"] is None


def test_the_gateway_log_has_no_errors(decrypting: Gateway, host_only: Gateway) -> None:
    for gw in (decrypting, host_only):
        assert "Traceback" not in gw.log_text()
