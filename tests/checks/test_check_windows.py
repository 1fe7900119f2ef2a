"""Check windows: an agent's check run on a learner device raises no alerts for its test URLs.

End to end (SQLite and PostgreSQL): a real mitmdump gateway and the device API over real HTTPS
share one store; an enrolled agent reports `pupil` signed in at 127.0.0.1 (so the gateway
filters that address as KS2); the agent's CLI runs the suite through the gateway. Alerts go to
a webhook on a closed port, so they wait in the outbox, where the test reads them (folding
off, so every alert is its own row with the block page's reference). Then, inside a window the
device opens the way the agent does: the suite's URL from the device raises nothing, another
URL on the same site from the device and the suite's URL from another address (127.0.0.2)
alert; after the window is closed the suite's URL alerts again.

Then the pieces on their own: the store functions, the gateway's `WindowBook` (including fail
safe: a store it can't read, or hasn't read lately, exempts nothing) and the endpoint's checks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.check_suite import Outcome
from agent.client import Client
from agent.filter_checks import close_window, open_window
from proxy_addons.checks.announced import (
    MAX_SECONDS,
    MIN_SECONDS,
    WindowBook,
    close_windows,
    open_windows,
    request_url,
)
from proxy_addons.checks.announced import open_window as store_window
from proxy_addons.checks.records import load_runs
from proxy_addons.core.periodic import Every
from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox, check_windows
from proxy_addons.web.app import create_device_api
from tests.agent.test_agent_filter_checks import agent, wait_for_ks2
from tests.conftest import (
    Gateway,
    Upstream,
    copy_policy,
    free_port,
    logged_references,
    start_mitmdump,
)
from tests.devices.test_device_api import SECRET, HttpsServer, make_pki, report
from tests.pg import db_url  # noqa: F401  (a fixture)

SUITE = """\
name: Window test suite
cases:
  - {id: adult-http, url: "http://adult.test/", category: adult, expect: blocked}
  - {id: adult-https, url: "https://adult.test/gallery?page=2", category: adult, expect: blocked}
  - {id: bank-host-only, url: "https://bank.test/", category: banking, expect: blocked}
  - {id: iwf-test-entry, url: "http://illegal.test/exact.html", category: csam, expect: blocked}
  - {id: lessons-https, url: "https://lessons.test/maths", category: education, expect: allowed}
  - id: early-years-only
    url: http://games.test/
    category: games
    expect: blocked
    profiles: [early_years]
"""
KS2_URLS = 5  # the cases for KS2: all but early-years-only
REF = re.compile(r"^x-schoolgate-reference:\s*(SG-[A-Z0-9-]+)", re.IGNORECASE | re.MULTILINE)
ALERT_KINDS = ("high_risk_block", "illegal_tier", "repeated_blocks")


def windows_policy(tmp: Path) -> Path:
    """The test policy with the suite, the device API, adult and banking as high-risk
    categories, no folding, and a webhook to a closed port (alerts wait in the outbox)."""
    path = copy_policy(tmp)
    (path.parent / "enrol.secret").write_text(SECRET + "\n")
    (path.parent / "checks.yaml").write_text(SUITE)
    (path.parent / "webhook.secret").write_text("s3cret-for-the-test\n")
    hook = f"http://127.0.0.1:{free_port()}/hook"
    text = path.read_text().replace(
        "notifications:\n",
        f"notifications:\n  webhook: {{url: '{hook}', secret_file: webhook.secret}}\n",
        1,
    )
    path.write_text(
        text + "\ndevices:\n  enrolment_secret_file: enrol.secret\n  identity_minutes: 30\n"
        "\nchecks:\n  suite: checks.yaml\n"
        "\nmonitoring:\n  high_risk_categories: [adult, banking]\n  fold_minutes: 0\n"
    )
    return path


@dataclass
class Setup:
    gateway: Gateway
    state: Path
    device_id: str
    store: Store


@pytest.fixture
def setup(tmp_path: Path, upstream: Upstream, db_url: str) -> Iterator[Setup]:  # noqa: F811
    policy_path = windows_policy(tmp_path)
    gateway = start_mitmdump(
        policy_path, tmp_path / "var", upstream, extra=["--set", f"schoolgate_dsn={db_url}"]
    )
    store = Store.open(db_url)
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
        yield Setup(gateway, state, device_id, store)
    finally:
        api.stop()
        store.dispose()
        gateway.stop()


def fetch(gateway: Gateway, url: str, *args: str) -> str:
    """The block page reference the gateway gave this request (it must be blocked)."""
    done = gateway.curl(url, "-D", "-", *args)
    assert done.stdout.endswith("\n403"), (url, done.stdout[-300:], done.stderr)
    found = REF.search(done.stdout)
    assert found, done.stdout[:500]
    return found.group(1)


def alerts(store: Store) -> list[tuple[str, dict[str, Any]]]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(alert_outbox.c.kind, alert_outbox.c.event).where(
                alert_outbox.c.kind.in_(ALERT_KINDS)
            )
        ).all()
    return [(r.kind, r.event) for r in rows]


def alerted_references(store: Store, wanted: set[str], timeout: float = 30) -> set[str]:
    """The references alerted on, once all of `wanted` are among them (the alert thread is
    one queue: by then every earlier request has been judged too)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {str(e["fields"].get("reference")) for _, e in alerts(store)}
        if wanted <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_an_agent_check_run_alerts_nobody_but_the_device_otherwise_does(setup: Setup) -> None:
    gateway, store = setup.gateway, setup.store
    wait_for_ks2(gateway)
    env = {"HTTP_PROXY": gateway.proxy, "HTTPS_PROXY": gateway.proxy}
    run = agent(setup.state, "--by", "Mr Okafor", env={**env, "SSL_CERT_FILE": str(gateway.ca)})
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "no check window" not in run.stderr
    assert "recorded as check run 1: 5 passed, 0 failed" in run.stdout
    [stored] = load_runs(store)
    assert stored.run.profile == "ks2" and stored.run.device_id == setup.device_id
    results = {r.case_id: r for r in stored.run.results}
    assert all(r.outcome is Outcome.PASS for r in results.values())
    run_refs = {r.block_reference for r in results.values() if r.block_reference}
    assert len(run_refs) == 4  # adult (http, https), bank (CONNECT refused), the IWF test entry

    # The run's POST closed the window.
    with store.connect() as conn:
        [window] = conn.execute(sa.select(check_windows)).all()
    assert window.closed_at is not None and window.ip == "127.0.0.1"
    assert window.device_id == setup.device_id and len(json.loads(window.urls)) == KS2_URLS
    assert open_windows(store, dt.datetime.now(dt.UTC)) == []

    # A window open (as the agent opens it: the real client code, which waits until the
    # gateways have read it): the suite's URL from the device is a check request; another
    # URL on the same site from the device, and the suite's URL from another address, alert.
    client = Client(setup.state)
    assert open_window(client, cases=KS2_URLS, timeout=15.0) is None
    in_window = fetch(gateway, "http://adult.test/")
    other_url = fetch(gateway, "http://adult.test/other-page")
    other_ip = fetch(gateway, "http://adult.test/", "--interface", "127.0.0.2")
    close_window(client)
    time.sleep(3.5)  # the gateway re-reads windows every 2 s
    after = fetch(gateway, "http://adult.test/")

    wanted = {other_url, other_ip, after}
    alerted = alerted_references(store, wanted)
    assert wanted <= alerted, (wanted, alerted)
    assert not (run_refs | {in_window}) & alerted, (run_refs, in_window, alerted)
    kinds = [kind for kind, _ in alerts(store)]
    assert "illegal_tier" not in kinds  # the IWF test entry was only fetched by the check
    # ...and the device's own alerts name the pupil, as ever.
    named = {
        str(e["fields"].get("reference")): e["fields"].get("user")
        for k, e in alerts(store)
        if k == "high_risk_block" and "user" in e["fields"]
    }
    assert named.get(other_url) == "pupil" and named.get(after) == "pupil"

    # The access log still has every one of them: they happened.
    expected = run_refs | {in_window} | wanted
    assert expected <= logged_references(gateway.var, expected)


# -- the pieces on their own ---------------------------------------------------------------

T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
URLS = ["http://Adult.test:80/", "https://adult.test/gallery?page=2", "https://bank.test/"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def record(url: str | None, host: str = "adult.test") -> dict[str, Any]:
    return {"host": host, "url": url, "action": "block"}


def test_windows_in_the_store(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        first, expires, count = store_window(store, "dev-1", "10.0.0.7", URLS, T0, 120)
        assert (count, expires) == (3, T0 + dt.timedelta(seconds=120))
        [window] = open_windows(store, T0)
        assert window.id == first and window.ip == "10.0.0.7"
        assert window.urls == {
            "http://adult.test/",
            "https://adult.test/gallery?page=2",
            "https://bank.test/",
        }
        assert window.hosts == {"adult.test", "bank.test"}
        assert open_windows(store, T0 + dt.timedelta(seconds=120)) == []  # expired
        # Clamped to a few minutes either way.
        _, short, _ = store_window(store, "dev-2", "10.0.0.8", URLS, T0, 1)
        _, long, _ = store_window(store, "dev-3", "10.0.0.9", URLS, T0, 10**6)
        assert short == T0 + dt.timedelta(seconds=MIN_SECONDS)
        assert long == T0 + dt.timedelta(seconds=MAX_SECONDS)
        # A device's new window closes its earlier one; closing ends them now.
        second, _, _ = store_window(store, "dev-1", "10.0.0.7", URLS[:1], T0, 120)
        assert [w.id for w in open_windows(store, T0) if w.device_id == "dev-1"] == [second]
        assert close_windows(store, "dev-1", T0) == 1
        assert close_windows(store, "dev-1", T0) == 0
        assert {w.device_id for w in open_windows(store, T0)} == {"dev-2", "dev-3"}
        # Old rows are deleted when a later window opens.
        later = T0 + dt.timedelta(days=2)
        store_window(store, "dev-4", "10.0.0.10", URLS, later, 120)
        with store.connect() as conn:
            left = conn.execute(sa.select(check_windows.c.device_id)).scalars().all()
        assert left == ["dev-4"]
    finally:
        store.dispose()


def test_the_book_exempts_only_the_suites_urls_from_that_address_in_the_window(
    db_url: str,  # noqa: F811
) -> None:
    store = Store.open(db_url)
    clock = Clock()
    book = WindowBook(lambda: store, clock)
    try:
        assert book.covering("10.0.0.7", record("http://adult.test/")) is None  # not read yet
        store_window(store, "dev-1", "10.0.0.7", URLS, T0, 120)
        assert book.covering("10.0.0.7", record("http://adult.test/")) is None  # nor now
        book.refresh()
        assert book.covering("10.0.0.7", record("http://adult.test/")) is not None
        assert book.covering("10.0.0.7", record("https://adult.test/gallery?page=2")) is not None
        # Where only the host is known (a CONNECT, a TLS hello), the suite's hosts.
        assert book.covering("10.0.0.7", record(None, "bank.test")) is not None
        assert book.covering("10.0.0.7", record(None, "adult.test")) is not None
        # Anything else still alerts: another URL, another host, another address.
        for other in (
            "http://adult.test/other",
            "https://adult.test/gallery?page=3",
            "https://adult.test/",  # the suite has the http one only
            "https://bank.test/login",
        ):
            assert book.covering("10.0.0.7", record(other)) is None, other
        assert book.covering("10.0.0.7", record(None, "friends.test")) is None
        assert book.covering("10.0.0.8", record("http://adult.test/")) is None
        assert book.covering(None, record("http://adult.test/")) is None
        # Expired (as far as the gateway's clock goes, before any re-read).
        clock.now = T0 + dt.timedelta(seconds=121)
        assert book.covering("10.0.0.7", record("http://adult.test/")) is None
        clock.now = T0
        # Closed: gone at the next read.
        close_windows(store, "dev-1", T0)
        book.refresh()
        assert book.covering("10.0.0.7", record("http://adult.test/")) is None
    finally:
        store.dispose()


def test_the_book_fails_safe(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    clock = Clock()
    try:
        store_window(store, "dev-1", "10.0.0.7", URLS, T0, 120)
        stale = WindowBook(lambda: store, clock, stale_seconds=0.2)
        stale.refresh()
        assert stale.covering("10.0.0.7", record("http://adult.test/")) is not None
        time.sleep(0.3)  # not re-read since (a store that hangs): nothing is exempt
        assert stale.covering("10.0.0.7", record("http://adult.test/")) is None

        book = WindowBook(lambda: store, clock)
        book.refresh()
        assert book.covering("10.0.0.7", record("http://adult.test/")) is not None
        with store.begin() as conn:  # the store can't be read any more
            conn.execute(sa.text("DROP TABLE check_windows"))
        book.refresh()
        assert book.covering("10.0.0.7", record("http://adult.test/")) is None
    finally:
        store.dispose()


def test_the_refresh_job_reads_the_store(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    book = WindowBook(lambda: store, refresh_seconds=0.1)
    # As the gateway's services run it (gateway/services.py).
    job = Every("check-windows", book.refresh_seconds, book.refresh, "not read", at_start=True)
    job.start()
    try:
        now = dt.datetime.now(dt.UTC)
        store_window(store, "dev-1", "10.0.0.7", URLS, now, 120)
        deadline = time.monotonic() + 10
        while book.covering("10.0.0.7", record("http://adult.test/")) is None:
            assert time.monotonic() < deadline, "the window was never read"
            time.sleep(0.05)
    finally:
        job.stop()
        store.dispose()


def test_request_urls_are_written_as_the_filter_writes_them() -> None:
    assert request_url("HTTP://Adult.Test:80") == "http://adult.test/"
    assert request_url("https://adult.test/a/../b?x=1") == "https://adult.test/b?x=1"
    assert request_url("ftp://adult.test/") is None
    assert request_url("http://exa mple/") is None


# -- the endpoint ---------------------------------------------------------------------------


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[Any, Store, str, str]]:  # noqa: F811
    store = Store.open(db_url)
    policy = load_policy(windows_policy(tmp_path))
    app = create_device_api(store, lambda: policy)
    client = app.test_client()
    enrolled = client.post("/api/v1/enrol", json={"secret": SECRET, "hostname": "lab-pc-07"})
    device_id, token = enrolled.json["device_id"], enrolled.json["token"]  # type: ignore[index]
    body = report(device_id, dt.datetime.now(dt.UTC), user="pupil", ips=["10.9.9.9"])
    headers, peer = {"Authorization": f"Bearer {token}"}, {"REMOTE_ADDR": "10.9.9.9"}
    assert (
        client.post("/api/v1/report", json=body, headers=headers, environ_base=peer).status_code
        == 202
    )
    yield client, store, device_id, token
    store.dispose()


def test_the_window_endpoint(api: tuple[Any, Store, str, str]) -> None:
    client, store, device_id, token = api
    auth = {"Authorization": f"Bearer {token}"}
    env = {"REMOTE_ADDR": "10.9.9.9"}
    path = "/api/v1/checks/windows"
    assert client.post(path, json={}, environ_base=env).status_code == 401
    forged = {"Authorization": f"Bearer {device_id}.forged"}
    assert client.post(path, json={}, headers=forged, environ_base=env).status_code == 401
    assert client.delete(path, environ_base=env).status_code == 401
    for body, field in (
        (b"[1]", "body"),
        (b"{nope", "body"),
        (b'{"urls": ["http://x.test/"]}', "body"),  # the device can't choose what is exempt
        (b'{"seconds": "60"}', "seconds"),
        (b'{"seconds": -5}', "seconds"),
        (b'{"seconds": true}', "seconds"),
    ):
        answer = client.post(
            path, data=body, headers={**auth, "Content-Type": "application/json"}, environ_base=env
        )
        assert (answer.status_code, answer.json["field"]) == (400, field), (body, answer.json)
    too_big = client.post(path, data=b" " * 2000, headers=auth, environ_base=env)
    assert too_big.status_code == 413
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(check_windows)).scalar() == 0

    opened = client.post(path, json={"seconds": 100}, headers=auth, environ_base=env)
    assert opened.status_code == 201, opened.json
    assert (opened.json["profile"], opened.json["urls"]) == ("ks2", KS2_URLS)
    assert opened.json["starts_in"] > 0
    [window] = open_windows(store, dt.datetime.now(dt.UTC))
    assert (window.ip, window.device_id) == ("10.9.9.9", device_id)  # where the API saw it
    assert "http://games.test/" not in window.urls  # early years only: not this device's
    # A forwarded address from a peer that is no trusted relay is never read.
    xff = {**auth, "X-Forwarded-For": "10.8.8.8"}
    assert client.post(path, headers=xff, environ_base=env).json["profile"] == "ks2"
    assert [w.ip for w in open_windows(store, dt.datetime.now(dt.UTC))] == ["10.9.9.9"]
    # Another address gets its own profile's URLs (nobody reported there: early years).
    elsewhere = client.post(path, headers=auth, environ_base={"REMOTE_ADDR": "10.8.8.8"})
    assert (elsewhere.json["profile"], elsewhere.json["urls"]) == ("early_years", KS2_URLS + 1)
    [window] = open_windows(store, dt.datetime.now(dt.UTC))  # one window per device
    assert window.ip == "10.8.8.8"

    closed = client.delete(path, headers=auth, environ_base=env)
    assert (closed.status_code, closed.json["closed"]) == (200, 1)
    assert open_windows(store, dt.datetime.now(dt.UTC)) == []

    # Posting a run closes the window, even a run the gateway refuses.
    client.post(path, headers=auth, environ_base=env)
    assert len(open_windows(store, dt.datetime.now(dt.UTC))) == 1
    refused = client.post("/api/v1/checks/runs", json={}, headers=auth, environ_base=env)
    assert refused.status_code == 400
    assert open_windows(store, dt.datetime.now(dt.UTC)) == []
