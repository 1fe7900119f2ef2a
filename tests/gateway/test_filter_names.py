"""The Filter add-on in-process (mitmproxy's taddons/tflow): which names of a flow it
reads, and what it answers. The wire-level table is tests/gateway/test_request_names_e2e.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from proxy_addons.gateway.addons.filter import Filter
from proxy_addons.gateway.addons.lifecycle import Lifecycle
from proxy_addons.gateway.services import Services, verdict_of
from tests.conftest import copy_policy


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filter]:
    tmp = tmp_path_factory.mktemp("filter")
    services = Services()
    lifecycle, addon = Lifecycle(services), Filter(services)
    # Proxyserver: the Filter's options (connection_strategy)
    with taddons.context(Proxyserver(), lifecycle, addon) as tctx:
        tctx.configure(lifecycle, schoolgate_policy=str(copy_policy(tmp)), schoolgate_var=str(tmp))
        yield addon
        lifecycle.done()


def flow(
    host: str,
    host_header: str | None,
    *,
    scheme: str = "http",
    path: str = "/",
    sni: str | None = None,
    mode: str = "regular",
    authority: str = "",
) -> http.HTTPFlow:
    f = tflow.tflow()
    f.client_conn.peername = ("192.0.2.50", 40000)
    f.client_conn.proxy_mode = ProxyMode.parse(mode)
    f.client_conn.sni = sni
    req = f.request
    req.scheme, req.host, req.port, req.path = scheme, host, 443 if scheme == "https" else 80, path
    req.authority = authority
    req.headers.clear()
    if host_header is not None:
        req.headers["Host"] = host_header
    return f


def run(gate: Filter, f: http.HTTPFlow) -> dict[str, object]:
    asyncio.run(gate.requestheaders(f))
    verdict = verdict_of(f)
    assert verdict is not None
    return dict(verdict.record)


def test_the_request_line_decides_whatever_the_host_header_says(gate: Filter) -> None:
    record = run(gate, f := flow("www.chatter.test", "plain.test"))
    assert record["action"] == "block" and record["host"] == "www.chatter.test"
    assert f.response is not None and f.response.status_code == 403


def test_a_blocked_host_header_blocks_an_allowed_destination(gate: Filter) -> None:
    record = run(gate, flow("plain.test", "www.chatter.test"))
    assert record["action"] == "block" and record["host"] == "www.chatter.test"


@pytest.mark.parametrize("bad", ["plain.test:#", "plain.test/", "a b", "plain.test:x", "[::1"])
def test_a_host_header_that_is_not_host_port_is_a_400(gate: Filter, bad: str) -> None:
    record = run(gate, f := flow("plain.test", bad))
    assert record["reason"] == "invalid"
    assert f.response is not None and f.response.status_code == 400


def test_two_host_headers_are_a_400(gate: Filter) -> None:
    f = flow("plain.test", "plain.test")
    f.request.headers.add("Host", "plain.test")
    assert run(gate, f)["reason"] == "invalid"


def test_http2_authority_and_sni_are_names_too(gate: Filter) -> None:
    f = flow("plain.test", None, scheme="https", sni="plain.test", authority="www.chatter.test")
    assert run(gate, f)["host"] == "www.chatter.test"
    f = flow("plain.test", "plain.test", scheme="https", sni="other.test")
    assert run(gate, f)["reason"] == "fronting"


def test_the_path_is_the_request_targets_not_a_fragment(gate: Filter) -> None:
    f = flow("illegal.test", "illegal.test", scheme="https", sni="illegal.test", path="/prefix/a")
    assert run(gate, f)["reason"] == "illegal"


def test_transparent_mode_decides_on_the_address_without_a_matching_name(gate: Filter) -> None:
    """No name resolves to 192.0.2.99 here: the address decides (a bare IP for learners)."""
    f = flow("192.0.2.99", "plain.test", mode="transparent")
    record = run(gate, f)
    assert record["action"] == "block" and record["reason"] == "bare_ip"


def test_transparent_mode_takes_a_name_that_resolves_to_the_address(gate: Filter) -> None:
    f = flow("127.0.0.1", "localhost", mode="transparent")  # the hosts file says so
    record = run(gate, f)
    assert record["host"] == "localhost" and record["reason"] != "bare_ip"


def test_a_block_page_that_fails_to_render_still_blocks(
    gate: Filter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template broken by an upgrade under a running gateway: a plain 403, never the site."""

    def broken(*args: object) -> http.Response:
        raise RuntimeError("template 'block.html' wants a variable it was not given")

    monkeypatch.setattr(gate, "_block_response", broken)
    record = run(gate, f := flow("www.chatter.test", "www.chatter.test"))
    assert record["action"] == "block"
    assert f.response is not None and f.response.status_code == 403
    assert str(record["reference"]) in (f.response.get_text() or "")


def test_a_folded_header_line_is_a_400(gate: Filter) -> None:
    f = flow("plain.test", "plain.test")
    f.request.headers["X"] = "y\r\n Host: www.chatter.test"
    assert run(gate, f)["reason"] == "invalid"
    assert f.response is not None and f.response.status_code == 400


def test_a_device_report_never_makes_staff_through_the_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reported user whom the directory puts in a staff group is not taken (the test
    stands in for LDAP with a function: the directory's own tests use a real slapd)."""
    tmp = tmp_path_factory.mktemp("groups")
    policy = copy_policy(tmp)
    text = policy.read_text().replace("identities:\n", "identities:\n  groups: {teachers: staff}\n")
    policy.write_text(text)
    services = Services()
    lifecycle = Lifecycle(services)
    with taddons.context(Proxyserver(), lifecycle) as tctx:
        tctx.configure(lifecycle, schoolgate_policy=str(policy), schoolgate_var=str(tmp))
        try:
            assert services.device_identities is not None
            monkeypatch.setattr(services.device_identities, "user_at", lambda ip: "mr.jones")
            monkeypatch.setattr(services, "groups_of", lambda u: ("teachers",) if u else ())
            assert services.identity(None, "192.0.2.50").user is None  # not staff by report
            signed_in = services.identity("mr.jones", "192.0.2.50")  # proxy sign-in: staff
            assert signed_in.user == "mr.jones" and signed_in.groups == ("teachers",)
        finally:
            lifecycle.done()
