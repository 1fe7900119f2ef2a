"""Circumvention through a real mitmdump gateway: DoH, Private Relay, VPN and proxy lists,
Tor and raw tunnels are refused, logged, alerted (signed webhook) and counted (metrics)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alerts.test_notify import SECRET, _Hook, _Receiver, hook_url
from tests.conftest import ROOT, Gateway, free_port, start_mitmdump
from tests.core.test_circumvention import OPENVPN_RESET
from tests.gateway.test_alerting_e2e import wait_for
from tests.gateway.test_safe_search_e2e import (
    USERS,
    StandIns,
    fetch,
    log_records,
    policy_for_engines,
)
from tests.gateway.test_safe_search_e2e import stand_ins as stand_ins  # noqa: F401 (fixture)

LISTS = ROOT / "tests" / "data" / "lists" / "ut1"


@pytest.fixture(scope="module")
def hook() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Hook)
    server.secret, server.status, server.deliveries = SECRET, 200, []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    stand_ins: StandIns,  # noqa: F811
    hook: _Receiver,
    metrics_port: int,
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("circumvention")
    policy = policy_for_engines(tmp, extra="monitoring:\n  fold_minutes: 0\n")
    (policy.parent / "hook-secret").write_bytes(SECRET)
    sources = ", ".join(f"ut1: {LISTS / name}" for name in ("doh", "vpn", "strict_redirector"))
    text = policy.read_text()
    text = text.replace(
        "categories:\n",
        "categories:\n  circumvention:\n    label: Ways round the school filter\n"
        f"    sources: [{sources}]\n",
    )
    text = text.replace(
        "      - block: [adult, social, banking]",
        "      - block: [adult, social, banking, circumvention]",
    )
    text = text.replace(
        "notifications:\n",
        f"notifications:\n  webhook: {{url: '{hook_url(hook)}', secret_file: hook-secret}}\n",
    )
    policy.write_text(text)
    extra = [*stand_ins.host_map, "--set", f"schoolgate_metrics_port={metrics_port}"]
    gw = start_mitmdump(policy, tmp / "var", stand_ins.upstream, extra=extra)
    yield gw
    gw.stop()


def alerts(hook: _Receiver, category: str) -> list[dict[str, Any]]:
    out = []
    for delivery in hook.deliveries:
        payload = json.loads(delivery.body)
        if (
            delivery.valid
            and payload["kind"] == "alert.circumvention"
            and payload["data"]["fields"]["category"] == category
        ):
            out.append(payload)
    return out


def logged(gw: Gateway, host: str, user: str) -> list[dict[str, Any]]:
    return [
        r
        for r in log_records(gw)
        if r["host"] == host and r["user"] == user and r["decision"] == "block"
    ]


def refused_at_connect(gw: Gateway, url: str, user: str) -> bool:
    result = gw.curl(url, user=f"{user}:{USERS[user]}")
    return result.returncode != 0 and "403" in result.stderr


# -- DNS over HTTPS ---------------------------------------------------------------------------


def test_doh_resolver_by_address_is_refused_logged_and_alerted(
    gateway: Gateway, hook: _Receiver
) -> None:
    # 9.9.9.9 is not on the test's UT1 excerpt: the built-in list of resolvers refuses it.
    assert refused_at_connect(gateway, "https://9.9.9.9/dns-query?dns=AAABAAABAAAAAAAA", "pupil")
    [alert] = wait_for(lambda: alerts(hook, "DNS over HTTPS"))
    fields = alert["data"]["fields"]
    assert alert["data"]["audience"] == "technical" and fields["site"] == "9.9.9.9"
    assert "pupil" not in json.dumps(alert) and fields["user_ref"].startswith("u-")
    [record] = wait_for(lambda: logged(gateway, "9.9.9.9", "pupil"))
    assert record["reason"] == "circumvention" and record["category"] == "circumvention"
    assert record["entry"] == "9.9.9.9" and record["stage"] == "connect"
    # 1.1.1.1 is on UT1's doh list: the policy's rule blocks it (the block page) and alerts.
    assert body_of(gateway, "https://1.1.1.1/dns-query?dns=AAAB", "pupil")[0] == 403
    wait_for(
        lambda: [
            a
            for a in alerts(hook, "Ways round the school filter")
            if a["data"]["fields"]["site"] == "1.1.1.1"
        ]
    )


def test_a_staff_profile_allowed_doh_reaches_the_resolver(gateway: Gateway) -> None:
    code, seen = fetch(gateway, "https://8.8.8.8/dns-query?dns=AAAB", "teacher")
    assert code == 200 and seen["server"] == "engine"


@pytest.mark.parametrize(
    "headers",
    [("-H", "Accept: application/dns-message"), ("-H", "Content-Type: application/dns-json")],
)
def test_doh_on_any_host_is_recognised_by_its_media_type(
    gateway: Gateway, headers: tuple[str, str]
) -> None:
    code, page = fetch(gateway, "https://plain.test/anything", "pupil", *headers)
    assert code == 403 and "way round the school" in page
    assert fetch(gateway, "https://plain.test/anything", "pupil")[0] == 200


def test_the_firefox_canary_domain_is_refused(gateway: Gateway) -> None:
    # Firefox turns its default DoH off when this name does not work (docs/circumvention.md).
    assert refused_at_connect(gateway, "https://use-application-dns.net/", "pupil")
    assert body_of(gateway, "http://use-application-dns.net/", "pupil")[0] == 403


def body_of(gw: Gateway, url: str, user: str) -> tuple[int, str]:
    result = gw.curl(url, user=f"{user}:{USERS[user]}")
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


# -- Private Relay, VPNs, proxies, Tor --------------------------------------------------------


def test_icloud_private_relay_is_refused_even_for_staff(gateway: Gateway, hook: _Receiver) -> None:
    assert refused_at_connect(gateway, "https://mask-h2.icloud.com/", "teacher")
    assert refused_at_connect(gateway, "https://mask.icloud.com/", "teacher")
    wait_for(lambda: alerts(hook, "iCloud Private Relay"))


@pytest.mark.parametrize(
    "url", ["https://nordvpn.com/", "https://www.expressvpn.com/", "http://croxyproxy.com/"]
)
def test_vpn_and_proxy_services_on_the_lists_are_blocked_and_alerted(
    gateway: Gateway, hook: _Receiver, url: str
) -> None:
    code, page = body_of(gateway, url, "pupil")
    assert code == 403 and "Ways round the school filter" in page
    host = url.split("/")[2]
    [record] = wait_for(lambda: logged(gateway, host, "pupil"))
    assert record["category"] == "circumvention" and record["reason"] == "rule"
    wait_for(
        lambda: [
            a
            for a in alerts(hook, "Ways round the school filter")
            if a["data"]["fields"]["site"] == host
        ]
    )


def test_tor_hidden_services_and_gateways_are_blocked(gateway: Gateway, hook: _Receiver) -> None:
    onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion"
    code, page = body_of(gateway, f"http://{onion}/", "teacher")
    assert code == 403 and "way round the school" in page
    assert refused_at_connect(gateway, f"https://{onion}/", "pupil")
    assert refused_at_connect(gateway, "https://bridges.torproject.org/", "pupil")
    wait_for(lambda: alerts(hook, "Tor"))


# -- tunnels ----------------------------------------------------------------------------------


def _tunnel(gw: Gateway, user: str, first_bytes: bytes, port: int = 443) -> bytes:
    """CONNECT to an allowed host, send `first_bytes`, return what comes back."""
    auth = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            f"CONNECT plain.test:{port} HTTP/1.1\r\nHost: plain.test:{port}\r\n".encode()
            + f"Proxy-Authorization: Basic {auth}\r\n\r\n".encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        sock.sendall(first_bytes)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received


@pytest.mark.parametrize(
    ("first_bytes", "protocol"),
    [
        (b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", "ssh"),
        (OPENVPN_RESET, "openvpn"),
        (bytes([5, 1, 0]), "socks"),
    ],
)
def test_a_tunnel_through_connect_is_closed_logged_and_alerted(
    gateway: Gateway, hook: _Receiver, first_bytes: bytes, protocol: str
) -> None:
    # Port 80's stand-in answers anything relayed to it (400 Bad request): nothing comes back.
    assert _tunnel(gateway, "pupil", first_bytes, port=80) == b""
    assert _tunnel(gateway, "pupil", first_bytes) == b""

    def found() -> list[dict[str, Any]]:
        return [r for r in logged(gateway, "plain.test", "pupil") if r["entry"] == protocol]

    records = wait_for(lambda: len(found()) == 2 and found())
    assert {r["stage"] for r in records} == {"tunnel"}
    assert {r["reason"] for r in records} == {"circumvention"}
    wait_for(lambda: alerts(hook, "A tunnel that is not web traffic"))


def test_a_tunnel_inside_decrypted_tls_is_closed_too(gateway: Gateway) -> None:
    def found() -> list[dict[str, Any]]:
        return [r for r in logged(gateway, "plain.test", "pupil") if r["entry"] == "ssh"]

    before = len(found())
    auth = base64.b64encode(f"pupil:{USERS['pupil']}".encode()).decode()
    trust = ssl.create_default_context(cafile=str(gateway.ca))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw:
        raw.sendall(
            b"CONNECT plain.test:443 HTTP/1.1\r\nHost: plain.test:443\r\n"
            + f"Proxy-Authorization: Basic {auth}\r\n\r\n".encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        with trust.wrap_socket(raw, server_hostname="plain.test") as tls:  # no ALPN offered
            tls.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            assert tls.recv(4096) == b""  # closed without relaying anything
    wait_for(lambda: len(found()) == before + 1)


def test_tls_and_http_through_connect_still_work(gateway: Gateway) -> None:
    assert fetch(gateway, "https://plain.test/ok", "pupil")[0] == 200
    request = b"GET /plain HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n"
    reply = _tunnel(gateway, "teacher", request, port=80)
    assert reply.split(b" ", 2)[1] == b"200" and b'"path": "/plain"' in reply


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_count_circumvention_by_kind_without_people_or_addresses(
    gateway: Gateway, metrics_port: int
) -> None:
    body_of(gateway, "http://x.onion/", "pupil")
    fetch(gateway, "https://www.google.com/search?q=metrics", "pupil")
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(("schoolgate_circumvention_blocked", "schoolgate_safe_search"))
    ]
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
    assert values['schoolgate_circumvention_blocked_total{kind="tor"}'] >= 1
    assert values['schoolgate_safe_search_total{action="rewritten",engine="google"}'] >= 1
    assert not any(w in "\n".join(lines) for w in ("pupil", "127.0.0.1", "onion", "google.com/"))


def test_no_errors_in_the_gateway_log(gateway: Gateway) -> None:
    assert "Traceback" not in gateway.log_text()
    assert Path(gateway.log).exists()
