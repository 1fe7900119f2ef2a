"""The gateway end to end: a real mitmdump on loopback, real curl and httpx clients
trusting its CA, and local upstream HTTP and HTTPS servers."""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import reports
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump
from tests.support.portal_form import curl_send_confirmed


def body_and_status(result) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    body, _, code = result.stdout.rpartition("\n")
    return body, int(code or 0)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gw")
    gw = start_mitmdump(copy_policy(tmp), tmp / "var", upstream)
    yield gw
    gw.stop()


def test_allowed_http_page_arrives_unchanged(gateway: Gateway) -> None:
    body, code = body_and_status(gateway.curl("http://plain.test/hello?x=1&y=%20z"))
    assert code == 200
    seen = json.loads(body)
    assert seen["host"] == "plain.test"
    assert seen["path"] == "/hello?x=1&y=%20z"


def test_allowed_https_page_arrives_unchanged_with_httpx(gateway: Gateway) -> None:
    trust = ssl.create_default_context(cafile=str(gateway.ca))
    with httpx.Client(proxy=gateway.proxy, verify=trust, timeout=10) as client:
        response = client.post("https://plain.test/form", content=b"a=1")
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "local"
    assert response.json() == {
        "host": "plain.test",
        "path": "/form",
        "method": "POST",
        "body": "a=1",
    }


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_blocked_host_gets_the_block_page(gateway: Gateway, scheme: str) -> None:
    result = gateway.curl(f"{scheme}://www.chatter.test/feed", "-i")
    body, code = body_and_status(result)
    assert code == 403
    assert "Social networks" in body
    assert "X-Upstream" not in body  # never reached the upstream
    ref = re.search(r"X-Schoolgate-Reference: (SG-[A-Z0-9-]+)", body, re.I)
    assert ref and ref.group(1) in body.split("\n\n", 1)[1]


@pytest.mark.parametrize(
    "host_header",
    ["CHATTER.TEST", "chatter.test.", "Chatter.Test.:80", "ｃｈａｔｔｅｒ.test"],
)
def test_other_spellings_of_a_blocked_host_are_blocked(gateway: Gateway, host_header: str) -> None:
    _, code = body_and_status(gateway.curl("http://plain.test/", "-H", f"Host: {host_header}"))
    assert code == 403


def test_blocked_url_prefix_blocks_only_that_path(gateway: Gateway) -> None:
    assert body_and_status(gateway.curl("https://mixed.test/adult/page"))[1] == 403
    assert body_and_status(gateway.curl("https://mixed.test/adult"))[1] == 403
    assert body_and_status(gateway.curl("https://mixed.test/adulthood"))[1] == 200
    assert body_and_status(gateway.curl("https://mixed.test/"))[1] == 200


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1"])
def test_bare_ip_in_any_notation_is_blocked_for_learners(gateway: Gateway, spelling: str) -> None:
    body, code = body_and_status(gateway.curl(f"http://{spelling}/"))
    assert code == 403
    assert "numbers" in body


def test_unknown_client_gets_the_strictest_learner_default(gateway: Gateway) -> None:
    body, code = body_and_status(gateway.curl("http://games.test/"))
    assert code == 403 and "Games" in body


def test_host_only_site_is_refused_at_connect_without_decryption(gateway: Gateway) -> None:
    result = gateway.curl("https://bank.test/")
    assert result.returncode != 0
    assert "403" in result.stderr  # CONNECT tunnel failed, response 403


def test_blocked_sni_behind_an_allowed_connect_is_refused(gateway: Gateway) -> None:
    # CONNECT names an allowed host; the TLS ClientHello names the blocked one.
    result = gateway.curl("https://bank.test/", "--connect-to", "bank.test:443:plain.test:443")
    assert result.returncode != 0
    assert "alert" in result.stderr.lower() or "ssl" in result.stderr.lower()


def test_domain_fronting_is_blocked(gateway: Gateway) -> None:
    body, code = body_and_status(gateway.curl("https://plain.test/", "-H", "Host: other.test"))
    assert code == 403
    assert "hide where it really goes" in body


def test_illegal_tier_gets_plain_access_denied(gateway: Gateway) -> None:
    for url in ("http://illegal.test/exact.html", "https://illegal.test/prefix/a/b"):
        body, code = body_and_status(gateway.curl(url))
        assert code == 403
        assert "Access denied" in body
        assert "illegal.test" not in body  # no URL echo on the illegal-tier page
    assert body_and_status(gateway.curl("http://illegal.test/other.html"))[1] == 200


def test_decisions_are_recorded_for_following_addons(gateway: Gateway) -> None:
    # The portal's report form records the reference, URL and reporter's profile.
    blocked, _ = body_and_status(gateway.curl("http://games.test/x", "-i"))
    ref = re.search(r"X-Schoolgate-Reference: (\S+)", blocked, re.I).group(1)  # type: ignore[union-attr]
    form = {"ref": ref, "url": "http://games.test/x", "message": "for maths"}
    body, code = curl_send_confirmed(gateway, "http://schoolgate.local/report", form)
    assert code == 200 and "Thank you" in body
    store = Store.open(store_url(gateway.var))
    with store.connect() as conn:
        record = conn.execute(sa.select(reports).order_by(reports.c.id.desc())).first()
    store.dispose()
    assert record is not None
    assert record.reference == ref
    assert record.profile == "early_years"
    assert record.text == "for maths"


def test_broken_policy_edit_keeps_the_last_good_policy(tmp_path: Path, upstream: Upstream) -> None:
    policy = copy_policy(tmp_path)
    gw = start_mitmdump(policy, tmp_path / "var", upstream)
    trust = ssl.create_default_context(cafile=str(gw.ca))
    client = httpx.Client(proxy=gw.proxy, verify=trust, timeout=10)
    try:
        # One client connection held open across both reloads.
        assert client.get("https://plain.test/").status_code == 200
        assert body_and_status(gw.curl("http://chatter.test/"))[1] == 403
        good = policy.read_text()
        policy.write_text(good.replace("profiles:", "profiles:\n  broken: [", 1))
        status = _wait_for(lambda: _status(gw).get("last_error"), 5)
        assert "line" in status["message"]
        assert body_and_status(gw.curl("http://chatter.test/"))[1] == 403
        assert body_and_status(gw.curl("http://plain.test/"))[1] == 200

        # A valid edit takes effect without a restart or dropped connections.
        (policy.parent / "lists" / "social.txt").write_text("chatter.test\nplain.test\n")
        policy.write_text(good)
        # In force without a restart (bench/reload_bench.py measures how fast).
        _wait_for(lambda: body_and_status(gw.curl("http://plain.test/"))[1] == 403, 10)
        assert _status(gw)["last_error"] is None
        assert gw.process.poll() is None
        assert client.get("https://plain.test/").status_code == 403  # same connection, new policy
        assert client.get("https://mixed.test/").status_code == 200
    finally:
        client.close()
        gw.stop()


def _status(gw: Gateway) -> dict:  # type: ignore[type-arg]
    return json.loads((gw.var / "run" / "status.json").read_text())


def _wait_for(check, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
