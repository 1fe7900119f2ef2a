"""circumvention.py: hosts, addresses, requests and first bytes that give a bypass away."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.core import circumvention as cv
from proxy_addons.core.policy.load import PolicyError, load_policy
from tests.conftest import copy_policy


@pytest.mark.parametrize(
    ("host", "kind", "entry"),
    [
        ("1.1.1.1", cv.DOH, "1.1.1.1"),
        ("8.8.8.8", cv.DOH, "8.8.8.8"),
        ("9.9.9.9", cv.DOH, "9.9.9.9"),
        ("[2606:4700:4700::1111]", cv.DOH, "2606:4700:4700::1111"),
        ("::ffff:8.8.4.4", cv.DOH, "8.8.4.4"),
        ("dns.google", cv.DOH, "dns.google"),
        ("mozilla.cloudflare-dns.com", cv.DOH, "cloudflare-dns.com"),
        ("use-application-dns.net", cv.DOH, "use-application-dns.net"),
        ("mask.icloud.com", cv.PRIVATE_RELAY, "mask.icloud.com"),
        ("mask-h2.icloud.com", cv.PRIVATE_RELAY, "mask-h2.icloud.com"),
        ("duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", cv.TOR, ".onion"),
        ("bridges.torproject.org", cv.TOR, "torproject.org"),
        ("abc.onion.ly", cv.TOR, "onion.ly"),
    ],
)
def test_hosts_and_addresses_that_are_ways_round(host: str, kind: str, entry: str) -> None:
    finding = cv.host_finding(host)
    assert finding is not None and finding.kind == kind and finding.entry == entry
    assert finding.label == cv.LABELS[kind] and finding.source.startswith("built-in")


@pytest.mark.parametrize(
    "host", ["1.1.1.4", "10.0.0.1", "icloud.com", "www.icloud.com", "onion.example", "google.com"]
)
def test_ordinary_hosts_are_not(host: str) -> None:
    assert cv.host_finding(host) is None


def test_doh_is_recognised_on_any_host_by_media_type_or_path() -> None:
    assert cv.request_finding("/", "application/dns-message", "") is not None
    assert cv.request_finding("/resolve?name=x", "", "application/dns-json") is not None
    assert cv.request_finding("/dns-query?dns=AAABAAAB", "", "*/*") is not None
    assert cv.request_finding("/x/dns-query?ct=1&dns=AAAB", "", "") is not None
    assert cv.request_finding("/dns-query", "text/html", "text/html") is None
    assert cv.request_finding("/search?q=dns-query", "", "") is None


# -- first bytes -----------------------------------------------------------------------------

# P_CONTROL_HARD_RESET_V2 with a fixed session id: test ids must be the same in every
# pytest-xdist worker.
OPENVPN_RESET = bytes.fromhex("000e38") + bytes.fromhex("5a17c0ffee0dd00d") + bytes(5)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (bytes.fromhex("16030100c8010000c40303"), "tls"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "http"),
        (b"PROPFIND /dav HTTP/1.1\r\n", "http"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http"),
        (b"\r\nGET / HTTP/1.1\r\n", "http"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "ssh"),
        (OPENVPN_RESET, "openvpn"),
        (bytes([5, 1, 0]), "socks"),
        (bytes([4, 1, 0, 80, 1, 2, 3, 4, 0]), "socks"),
        (b"\x00\x01binary nonsense that is long enough", "unknown"),
        (b"hello world, lower case", "unknown"),
    ],
)
def test_first_bytes_say_what_a_connection_is(data: bytes, kind: str) -> None:
    assert cv.sniff(data) == kind
    assert cv.is_tunnel(kind) is (kind not in ("tls", "http"))


@pytest.mark.parametrize("data", [b"", b"\x16", b"\x16\x03", b"GE", b"OPTIONS", b"SSH", b"S"])
def test_too_few_bytes_wait_for_more(data: bytes) -> None:
    assert cv.sniff(data) is None


@given(st.binary(min_size=1, max_size=64))
def test_every_start_is_classified_or_waited_for_and_http_and_tls_are_never_tunnels(
    data: bytes,
) -> None:
    kind = cv.sniff(data)
    assert kind in (None, "tls", "http", "ssh", "openvpn", "socks", "unknown")
    if data.startswith((b"GET /", b"POST /", b"CONNECT ")):
        assert kind == "http"
    if len(data) >= 3 and data[0] == 0x16 and data[1] == 3 and data[2] <= 4:
        assert kind == "tls"


@given(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]))
def test_a_request_line_arriving_a_byte_at_a_time_is_never_called_a_tunnel(method: bytes) -> None:
    line = method + b" /index.html HTTP/1.1\r\n"
    for end in range(1, len(line) + 1):
        assert not cv.is_tunnel(cv.sniff(line[:end]))


def test_list_blocks_are_counted_by_the_list_they_came_from() -> None:
    assert cv.kind_of({"circumvention": "tor"}) == "tor"
    assert cv.kind_of({"list_source": "/p/lists/ut1/vpn"}) == "vpn"
    assert cv.kind_of({"list_source": "/p/lists/ut1/doh"}) == "doh"
    assert cv.kind_of({"list_source": "/p/lists/ut1/strict_redirector"}) == "proxy"
    assert cv.kind_of({"list_source": "/p/lists/ut1/residential-proxies"}) == "proxy"
    assert cv.kind_of({"list_source": "/p/lists/ut1/remote-control"}) == "listed"


# -- the policy setting ----------------------------------------------------------------------


def _with(tmp_path: Path, old: str, new: str) -> Path:
    policy = copy_policy(tmp_path)
    text = policy.read_text()
    assert old in text
    policy.write_text(text.replace(old, new, 1))
    return policy


def test_staff_may_be_allowed_kinds_learners_never(tmp_path: Path) -> None:
    staff = "    audience: staff\n"
    policy = load_policy(_with(tmp_path / "a", staff, staff + "    allow_circumvention: [doh]\n"))
    assert policy.profiles["staff"].allow_circumvention == {"doh"}
    assert policy.profiles["ks2"].allow_circumvention == frozenset()

    learner = "    audience: learner\n"
    path = _with(tmp_path / "b", learner, learner + "    allow_circumvention: [doh, vpn]\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    messages = [m for _, m in err.value.problems]
    assert any("'vpn' is not a kind of circumvention" in m for m in messages)
    assert any("learner profiles always block ways round the filter" in m for m in messages)
    assert all(w.file == str(path) for w, _ in err.value.problems)
