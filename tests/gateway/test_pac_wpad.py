"""PAC and WPAD: served by a real gateway (through it, and directly as WPAD asks), then
evaluated by a real PAC engine, headless Chromium's, against a gateway and a local server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.core import pac
from proxy_addons.core.policy.load import PolicyError, load_policy
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # Stands in for DNS: every name (and address) a DIRECT connection is made to is this
    # machine's loopback, where the test's server listens; nothing leaves the machine.
    "--host-resolver-rules=MAP * 127.0.0.1",
]
SCHOOL_NET = "198.51.100.0/24"  # a school network outside the private ranges


def school_policy(tmp: Path, proxy_address: str | None = None) -> Path:
    policy = copy_policy(tmp)
    text = policy.read_text()
    text = text.replace(
        "  networks: {10.20.0.0/24: staff}",
        f"  networks: {{10.20.0.0/24: staff, {SCHOOL_NET}: staff}}",
    )
    if proxy_address:
        text = text.replace(
            "  portal_host: schoolgate.local",
            f"  portal_host: schoolgate.local\n  proxy_address: {proxy_address}",
        )
    policy.write_text(text)
    return policy


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-D", "-", *args], capture_output=True, text=True
    )


@pytest.fixture
def gateway(tmp_path: Path, upstream: Upstream) -> Iterator[Gateway]:
    gw = start_mitmdump(school_policy(tmp_path), tmp_path / "var", upstream)
    yield gw
    gw.stop()


def test_pac_is_served_through_the_proxy_and_directly_for_wpad(gateway: Gateway) -> None:
    through = curl("-x", gateway.proxy, "http://schoolgate.local/proxy.pac")
    assert "200" in through.stdout.splitlines()[0]
    assert f"content-type: {pac.CONTENT_TYPE}" in through.stdout.lower()
    # No proxy_address in the policy: the address the device reached the gateway on.
    assert f'var GATEWAY = "PROXY 127.0.0.1:{gateway.port}";' in through.stdout
    assert "FindProxyForURL" in through.stdout and '["198.51.100.0", "255.255.255.0"]' in (
        through.stdout
    )
    # WPAD: the browser asks http://wpad.<domain>/wpad.dat, which DNS points at the gateway,
    # so the request arrives on the gateway's port in origin form, not through the proxy.
    direct = curl("-H", "Host: wpad.school.lan", f"http://127.0.0.1:{gateway.port}/wpad.dat")
    assert "200" in direct.stdout.splitlines()[0] and "FindProxyForURL" in direct.stdout
    assert f"content-type: {pac.CONTENT_TYPE}" in direct.stdout.lower()
    by_address = curl(f"http://127.0.0.1:{gateway.port}/proxy.pac")
    assert "FindProxyForURL" in by_address.stdout
    through_wpad = curl("-x", gateway.proxy, "http://wpad/wpad.dat")
    assert "FindProxyForURL" in through_wpad.stdout
    body = through_wpad.stdout.split("\n\n", 1)[1]  # text mode: CRLF read as LF
    head = curl("-I", "-x", gateway.proxy, "http://wpad/wpad.dat")
    assert f"content-length: {len(body.encode())}" in head.stdout.lower()
    # Other pages of a wpad host are not the gateway's to answer.
    assert "FindProxyForURL" not in curl("-x", gateway.proxy, "http://wpad.test/x.js").stdout

    # A proxy address in the policy takes over within the reload time.
    policy = gateway.policy
    policy.write_text(
        policy.read_text().replace(
            "  portal_host: schoolgate.local",
            "  portal_host: schoolgate.local\n  proxy_address: Gateway.School.LAN:3128",
        )
    )
    deadline = time.monotonic() + 10
    while (
        "PROXY gateway.school.lan:3128"
        not in curl("-x", gateway.proxy, "http://schoolgate.local/proxy.pac").stdout
    ):
        assert time.monotonic() < deadline, gateway.log_text()[-2000:]
        time.sleep(0.2)
    named = curl("-H", "Host: gateway.school.lan:3128", f"http://127.0.0.1:{gateway.port}/wpad.dat")
    assert 'var GATEWAY_HOST = "gateway.school.lan";' in named.stdout


def test_a_bad_proxy_address_is_refused_with_its_line(tmp_path: Path) -> None:
    policy = school_policy(tmp_path, "gateway.school.lan")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    line = policy.read_text().splitlines().index("  proxy_address: gateway.school.lan") + 1
    message = str(caught.value)
    assert f"school.yaml, line {line}:" in message and "proxy_address" in message
    ok = load_policy(school_policy(tmp_path / "b", "'[FD00::5]:8080'"))
    assert ok.proxy_address == "[fd00::5]:8080"
    assert '"fd00::5"' in pac.build(ok, ok.proxy_address)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_chromium_follows_the_pac_direct_for_local_and_school_networks(
    gateway: Gateway, upstream: Upstream
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (dev extras)")
    port = upstream.http_port
    pac_url = f"http://127.0.0.1:{gateway.port}/proxy.pac"
    expect_direct = {
        f"http://intranet:{port}/plain-name": "plain host name",
        f"http://10.20.0.7:{port}/school-lan": "private and school network",
        f"http://172.20.1.1:{port}/private": "private network",
        f"http://198.51.100.7:{port}/school-public": "the school's own public network",
    }
    expect_proxy = {
        f"http://www.example.com:{port}/through-gateway": "a web site",
        f"http://203.0.113.9:{port}/public-ip": "a public address",
    }
    seen: dict[str, tuple[int, str]] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--proxy-pac-url={pac_url}"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            for url in [*expect_direct, *expect_proxy, "http://schoolgate.local/"]:
                response = page.goto(url)
                assert response is not None
                seen[url] = (response.status, page.content())
        finally:
            browser.close()
    log = gateway.log_text()
    for url, why in expect_direct.items():
        status, body = seen[url]
        path = url.split(str(port), 1)[1]
        assert status == 200 and f'"path": "{path}"' in body, why
        assert path not in log, f"{why} went through the gateway"
    for url, why in expect_proxy.items():
        path = url.split(str(port), 1)[1]
        assert path in log, f"{why} did not go through the gateway"
    # Through the gateway: the site's page, and the block page for a bare public address.
    assert seen[f"http://www.example.com:{port}/through-gateway"][0] == 200
    assert seen[f"http://203.0.113.9:{port}/public-ip"][0] == 403
    # The portal host only the gateway answers: it must go through it.
    status, body = seen["http://schoolgate.local/"]
    assert status == 200 and "School internet" in body
