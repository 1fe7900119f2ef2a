"""`schoolgate-agent checks` through a real gateway, and the device API's check endpoints.

End to end: a real mitmdump gateway with the suite in its policy, the device API over real
HTTPS on the same store, an agent enrolled against it, and the agent's CLI (a subprocess)
running the suite over the device's network path: first with proxy environment variables,
then with the PAC file the gateway itself serves. Test hosts resolve nowhere: the gateway's
upstream connections go to the local echo site (tests/support/local_upstream.py), and
`down.test` to a closed port. The device's report says `pupil` is signed in at 127.0.0.1, so
the gateway filters the agent's requests as KS2 and the suite comes for KS2.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.check_suite import Outcome
from agent.client import Client
from proxy_addons.checks.records import load_runs
from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import check_results, check_runs
from proxy_addons.web.app import create_device_api
from tests.conftest import (
    ROOT,
    Gateway,
    Upstream,
    copy_policy,
    free_port,
    logged_references,
    start_mitmdump,
)
from tests.devices.test_device_api import SECRET, HttpsServer, Pki, make_pki, report
from tests.pg import db_url  # noqa: F401  (a fixture)

SUITE = """\
name: Agent check test suite
cases:
  - {id: adult-http, url: "http://adult.test/", category: adult, expect: blocked}
  - {id: social-https, url: "https://friends.test/wall", category: social, expect: blocked}
  - {id: bank-host-only, url: "https://bank.test/", category: banking, expect: blocked}
  - {id: iwf-test-entry, url: "http://illegal.test/exact.html", category: csam, expect: blocked}
  - {id: lessons-https, url: "https://lessons.test/maths", category: education, expect: allowed}
  - id: games-ks2
    url: https://games.test/times-tables
    category: education
    expect: allowed
    profiles: [ks2]
  - id: over-blocked
    url: https://chatter.test/homework-club
    category: education
    expect: allowed
    profiles: [ks2]
  - {id: down, url: "http://down.test/", category: education, expect: allowed}
  - id: early-years-only
    url: http://games.test/
    category: games
    expect: blocked
    profiles: [early_years]
"""
EXPECTED = {
    "adult-http": Outcome.PASS,
    "social-https": Outcome.PASS,
    "bank-host-only": Outcome.PASS,
    "iwf-test-entry": Outcome.PASS,
    "lessons-https": Outcome.PASS,
    "games-ks2": Outcome.PASS,  # allowed for KS2 (only early years blocks games)
    "over-blocked": Outcome.FAIL,  # the policy blocks it for KS2: over-blocking fails
    "down": Outcome.ERROR,  # the site can't be reached: a 502, neither pass nor fail
}


def checks_policy(tmp: Path) -> Path:
    path = copy_policy(tmp)
    (path.parent / "enrol.secret").write_text(SECRET + "\n")
    (path.parent / "checks.yaml").write_text(SUITE)
    with path.open("a") as fh:
        fh.write(
            "\ndevices:\n  enrolment_secret_file: enrol.secret\n  identity_minutes: 30\n"
            "\nchecks:\n  suite: checks.yaml\n"
        )
    return path


@dataclass
class Setup:
    gateway: Gateway
    api: HttpsServer
    pki: Pki
    state: Path
    device_id: str
    store: Store


@pytest.fixture
def setup(tmp_path: Path, upstream: Upstream) -> Iterator[Setup]:
    policy_path = checks_policy(tmp_path)
    down = f"down.test=127.0.0.1:{free_port()}"  # nothing listens there
    gateway = start_mitmdump(
        policy_path, tmp_path / "var", upstream, extra=["--set", f"local_upstream_hosts={down}"]
    )
    store = Store.open(store_url(gateway.var, ""))
    policy = load_policy(policy_path)
    pki = make_pki(tmp_path / "pki", "School")
    api = HttpsServer(create_device_api(store, lambda: policy), pki)
    api.start()
    try:
        state = tmp_path / "agent"
        device_id = Client(state, api.url, pki.ca).enrol(SECRET, "lab-pc-07")
        now = dt.datetime.now(dt.UTC)
        sent = Client(state).send(report(device_id, now, user="pupil", ips=["127.0.0.1"]))
        assert sent.sent == 1
        yield Setup(gateway, api, pki, state, device_id, store)
    finally:
        api.stop()
        store.dispose()
        gateway.stop()


def wait_for_ks2(gateway: Gateway) -> None:
    """Until the gateway has read the report: games are blocked for early years, not KS2."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if gateway.curl("http://games.test/").stdout.endswith("\n200"):
            return
        time.sleep(0.5)
    raise AssertionError("the gateway never attributed 127.0.0.1 to the pupil")


def agent(state: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`schoolgate-agent checks` with its state folder, with no proxy but what `env` sets."""
    clean = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    cmd = [sys.executable, "-m", "agent.cli", "checks", "--state", str(state), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**clean, **env}, cwd=ROOT, timeout=120
    )


def test_agent_runs_the_suite_through_the_gateway_and_the_runs_are_recorded(
    setup: Setup,
) -> None:
    wait_for_ks2(setup.gateway)
    proxy = setup.gateway.proxy
    trust = {"SSL_CERT_FILE": str(setup.gateway.ca)}  # the school CA, as the device has it

    by_env = agent(
        setup.state, "--by", "Mr Okafor", env={"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, **trust}
    )
    assert by_env.returncode == 1, by_env.stderr  # a case failed
    assert "profile ks2; network path: proxy settings" in by_env.stdout
    assert "recorded as check run 1: 6 passed, 1 failed, 1 could not be judged" in by_env.stdout

    pac_url = f"http://127.0.0.1:{setup.gateway.port}/proxy.pac"  # the gateway's own PAC
    by_pac = agent(
        setup.state, "--by", "Mr Okafor", "--pac", pac_url, "--format", "json", env=trust
    )
    assert by_pac.returncode == 1, by_pac.stderr
    posted = json.loads(by_pac.stdout[: by_pac.stdout.rindex("}") + 1])
    assert posted["network_path"] == f"PAC {pac_url}"

    runs = load_runs(setup.store)
    assert [r.id for r in runs] == [2, 1]
    for stored in runs:
        run = stored.run
        assert (run.source, run.started_by, run.profile) == ("agent", "Mr Okafor", "ks2")
        assert (run.device_id, run.device_type, run.os) == (
            setup.device_id,
            "Linux PC",
            "linux 24.04",
        )
        assert run.term == "Whole year" and run.suite == "Agent check test suite"
        results = {r.case_id: r for r in run.results}
        assert {k: r.outcome for k, r in results.items()} == EXPECTED
        via = f"via http://127.0.0.1:{setup.gateway.port}"
        assert all(via in r.evidence for r in run.results), [r.evidence for r in run.results]
        assert "CONNECT refused with 403 block page SG-" in results["bank-host-only"].evidence
        assert results["down"].status == 502
    assert runs[1].run.browser is not None and runs[1].run.browser.endswith("(proxy settings)")
    assert runs[0].run.browser is not None and runs[0].run.browser.endswith(f"(PAC {pac_url})")

    # Each blocked case names the reference the gateway gave that very request.
    blocked = [
        r
        for stored in runs
        for r in stored.run.results
        if r.case_id in ("adult-http", "social-https", "bank-host-only", "iwf-test-entry")
    ]
    wanted = {str(r.block_reference) for r in blocked}
    references = logged_references(setup.gateway.var, wanted)
    for r in blocked:
        assert r.block_reference in references, (r.case_id, r.evidence)

    # Without the school CA the decrypted HTTPS cases can't be judged: errors, not results.
    untrusted = agent(
        setup.state, "--by", "Mr Okafor", env={"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}
    )
    assert untrusted.returncode == 2, untrusted.stderr  # nothing failed; some not judged
    [third] = load_runs(setup.store, run_ids=[3])
    got = {r.case_id: r for r in third.run.results}
    assert got["social-https"].outcome is Outcome.ERROR
    assert "TLS: certificate verify failed" in got["social-https"].evidence
    # This device completed decrypted handshakes before (the runs above), so a refusal
    # counts for the site it happened on only (ca_trust.py): every decrypted case of this
    # run meets the school's certificate and can't be judged, blocked sites included; a
    # client can't opt out of decryption for everything by failing one handshake.
    for case_id in ("lessons-https", "games-ks2", "over-blocked"):
        assert got[case_id].outcome is Outcome.ERROR, got[case_id].evidence
        assert "TLS: certificate verify failed" in got[case_id].evidence
    assert got["bank-host-only"].outcome is Outcome.PASS  # refused before any TLS


# -- the endpoints on their own: validation ------------------------------------------------


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[Any, Store, str, str]]:  # noqa: F811
    store = Store.open(db_url)
    policy = load_policy(checks_policy(tmp_path))
    app = create_device_api(store, lambda: policy)
    client = app.test_client()
    enrolled = client.post("/api/v1/enrol", json={"secret": SECRET, "hostname": "ipad-lab"})
    device_id, token = enrolled.json["device_id"], enrolled.json["token"]  # type: ignore[index]
    now = dt.datetime.now(dt.UTC)
    body = report(device_id, now, user="pupil", ips=["10.9.9.9"])
    headers, peer = {"Authorization": f"Bearer {token}"}, {"REMOTE_ADDR": "10.9.9.9"}
    assert (
        client.post("/api/v1/report", json=body, headers=headers, environ_base=peer).status_code
        == 202
    )
    yield client, store, device_id, token
    store.dispose()


def good_run(cases: list[str], profile: str = "ks2") -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "suite": "Agent check test suite",
        "profile": profile,
        "started_by": "Ms Rivera",
        "started_at": (now - dt.timedelta(minutes=2)).isoformat(),
        "finished_at": now.isoformat(),
        "network_path": "proxy settings",
        "results": [
            {
                "case": c,
                "observation": {
                    "status": 403,
                    "blocked": True,
                    "block_reference": "SG-BCDF-GHJK",
                    "safe_search": None,
                    "error": None,
                    "evidence": "403 block page SG-BCDF-GHJK",
                },
            }
            for c in cases
        ],
    }


def test_suite_for_the_device_follows_its_identity(api: tuple[Any, Store, str, str]) -> None:
    client, _, device_id, token = api
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/checks").status_code == 401
    assert client.get("/api/v1/checks", headers={"Authorization": "Bearer x.y"}).status_code == 401
    at_desk = client.get("/api/v1/checks", headers=auth, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert at_desk.status_code == 200
    assert (at_desk.json["profile"], at_desk.json["device_id"]) == ("ks2", device_id)
    ids = [c["id"] for c in at_desk.json["cases"]]
    assert "games-ks2" in ids and "early-years-only" not in ids
    elsewhere = client.get("/api/v1/checks", headers=auth, environ_base={"REMOTE_ADDR": "10.8.8.8"})
    assert elsewhere.json["profile"] == "early_years"  # nobody reported there: the default
    assert "early-years-only" in [c["id"] for c in elsewhere.json["cases"]]


def test_posted_runs_are_validated_and_bad_ones_store_nothing(
    api: tuple[Any, Store, str, str],
) -> None:
    client, store, device_id, token = api
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    env = {"REMOTE_ADDR": "10.9.9.9"}

    def post(body: Any, raw: bytes | None = None, **extra: str) -> Any:
        data = raw if raw is not None else json.dumps(body).encode()
        return client.post(
            "/api/v1/checks/runs", data=data, headers={**headers, **extra}, environ_base=env
        )

    def changed(run: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {**run, **fields}

    def observed(**fields: Any) -> dict[str, Any]:
        run = good_run(["adult-http"])
        run["results"][0]["observation"].update(fields)
        return run

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    base = good_run(["adult-http", "over-blocked"])
    bad: list[tuple[Any, bytes | None, int, str | None]] = [
        (base, b"{not json", 400, "body"),
        (base, b'{"suite": "\\u0000"}', 400, "body"),
        ([1, 2], None, 400, "body"),
        (changed(base, extra=1), None, 400, "extra"),
        (changed(base, suite="Another suite"), None, 400, "suite"),
        (changed(base, profile="staff"), None, 400, "profile"),
        (changed(base, started_by=""), None, 400, "started_by"),
        (changed(base, started_by="x" * 101), None, 400, "started_by"),
        (changed(base, started_at="yesterday"), None, 400, "started_at"),
        (changed(base, started_at="2026-11-25T09:00:00"), None, 400, "started_at"),
        (changed(base, finished_at=future), None, 400, "finished_at"),
        (changed(base, started_at="2020-01-01T00:00:00+00:00"), None, 400, "started_at"),
        (changed(base, results=[]), None, 400, "results"),
        (changed(base, results="all good"), None, 400, "results"),
        (good_run(["adult-http", "adult-http"]), None, 400, "results[1].case"),
        (good_run(["early-years-only"]), None, 400, "results[0].case"),
        (good_run(["no-such-case"]), None, 400, "results[0].case"),
        (observed(status="403"), None, 400, "results[0].observation"),
        (observed(status=999), None, 400, "results[0].observation.status"),
        (observed(blocked="yes"), None, 400, "results[0].observation"),
        (observed(safe_search="on"), None, 400, "results[0].observation"),
        (good_run(["adult-http"]) | {"results": [{"case": "adult-http"}]}, None, 400, None),
        (base, json.dumps(base).encode() + b" " * 300_000, 413, None),
    ]
    for body, raw, status, field in bad:
        answer = post(body, raw)
        assert answer.status_code == status, (field, answer.status_code, answer.json)
        assert answer.is_json
        if field is not None:
            assert answer.json["field"] == field, (field, answer.json)
    wrong_token = client.post(
        "/api/v1/checks/runs",
        json=base,
        headers={"Authorization": f"Bearer {device_id}.forged"},
        environ_base=env,
    )
    assert wrong_token.status_code == 401
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(check_runs)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(check_results)).scalar() == 0

    # The gateway judges each case itself: "blocked" for an allowed case is a failure.
    answer = post(base)
    assert answer.status_code == 201, answer.json
    assert (answer.json["passed"], answer.json["failed"]) == (1, 1)
    [stored] = load_runs(store)
    assert (stored.run.source, stored.run.device_id) == ("agent", device_id)
    assert stored.run.os == "linux 24.04" and stored.run.device_type == "Linux PC"
    assert {r.case_id: r.outcome for r in stored.run.results} == {
        "adult-http": Outcome.PASS,
        "over-blocked": Outcome.FAIL,
    }
