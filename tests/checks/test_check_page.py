"""The browser check page's parts on their own: probes, conclusions, the page's rules.

The whole path (Chromium, the real gateway and its witness) is test_check_page_chromium.py;
here the pure conclusion logic is driven with the sightings the witness records, and the page
with Flask's test client on a real store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from agent.check_suite import CheckCase, Expect, Observation, Outcome, classify
from proxy_addons.checks.page import add_check_page
from proxy_addons.checks.probes import (
    BrowserSaw,
    ProbeBook,
    ProbeBusy,
    ProbeError,
    Sighting,
    Stage,
    conclude,
    host_of,
)
from proxy_addons.checks.records import CheckRun, load_runs, record_run
from proxy_addons.checks.user_agent import browser_of, os_of
from proxy_addons.core.decide import Identity, resolve_profile
from proxy_addons.core.policy.check_suite_file import Suite, load_suite
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from tests.conftest import copy_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

URL = "https://friends.test/wall"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def blocked(ref: str = "SG-BCDF-GHJK", status: int | None = 403) -> Observation:
    return Observation(status, True, ref, None, None, f"{status} block page {ref}")


def allowed(status: int = 200) -> Observation:
    return Observation(status, False, None, None, None, f"{status} friends.test")


def armed(*sightings: Sighting) -> Any:
    book = ProbeBook()
    probe = book.arm("run/case", "10.1.1.1", URL)
    for s in sightings:
        book.note(probe, s)
    return probe


# -- probes --------------------------------------------------------------------------------


def test_probes_match_client_and_host_and_expire() -> None:
    clock = Clock()
    book = ProbeBook(clock)
    probe = book.arm("t/a", "10.1.1.1", "https://Friends.TEST./wall")
    assert probe.hosts == {"friends.test"}
    assert book.watching("10.1.1.1", "friends.test") is probe
    assert book.watching("10.1.1.2", "friends.test") is None  # another device
    assert book.watching("10.1.1.1", "other.test") is None
    with pytest.raises(ProbeBusy):  # the same address and host, still armed
        book.arm("u/a", "10.1.1.1", "http://friends.test/")
    book.arm("u/b", "10.1.1.2", "http://friends.test/")  # another address is fine
    clock.now += 31
    assert book.watching("10.1.1.1", "friends.test") is None
    book.arm("u/a", "10.1.1.1", "http://friends.test/")  # expired: free again
    assert book.settle("t/a", wait=0) is None  # expired probes are gone
    with pytest.raises(ProbeError):
        host_of("http:///nohost")


def test_settle_waits_for_the_gateways_hook() -> None:
    book = ProbeBook()
    probe = book.arm("t/a", "10.1.1.1", URL)
    later = threading.Timer(0.2, book.note, (probe, Sighting(Stage.RESPONSE, blocked())))
    later.start()
    settled = book.settle("t/a", wait=3)
    later.join()
    assert settled is probe and len(settled.sightings) == 1
    assert book.watching("10.1.1.1", "friends.test") is None  # disarmed


def test_tunnels_are_remembered_until_closed() -> None:
    book = ProbeBook()
    book.tunnel_opened(7, "10.1.1.1", "bank.test")
    assert book.tunnel_open("10.1.1.1", {"bank.test"})
    assert not book.tunnel_open("10.1.1.2", {"bank.test"})
    book.tunnel_closed(7)
    assert not book.tunnel_open("10.1.1.1", {"bank.test"})


# -- conclusions ---------------------------------------------------------------------------


def test_the_gateways_block_wins_whatever_the_browser_saw() -> None:
    page = armed(Sighting(Stage.RESPONSE, blocked()))
    seen = conclude(page, BrowserSaw.RESPONSE, "")
    assert (seen.blocked, seen.block_reference, seen.status) == (True, "SG-BCDF-GHJK", 403)
    refused = armed(Sighting(Stage.REFUSED, blocked("SG-MMMM-NNNN", None)))
    seen = conclude(refused, BrowserSaw.ERROR, "Failed to fetch")
    assert seen.blocked and seen.block_reference == "SG-MMMM-NNNN"
    assert "the browser saw error (Failed to fetch)" in seen.evidence


def test_a_redirect_to_a_block_page_is_blocked() -> None:
    seen = conclude(
        armed(Sighting(Stage.RESPONSE, allowed(302)), Sighting(Stage.RESPONSE, blocked())),
        BrowserSaw.RESPONSE,
        "",
    )
    assert seen.blocked


def test_allowed_answers_and_their_status() -> None:
    seen = conclude(armed(Sighting(Stage.RESPONSE, allowed())), BrowserSaw.RESPONSE, "")
    assert (seen.blocked, seen.status, seen.error) == (False, 200, None)
    passed = conclude(armed(Sighting(Stage.PASSED, None, "passed")), BrowserSaw.RESPONSE, "")
    assert not passed.blocked and passed.status is None and passed.error is None
    reused = conclude(armed(), BrowserSaw.RESPONSE, "", tunnel_open=True)
    assert "already passed through" in reused.evidence and reused.error is None


def test_errors_are_errors_not_results() -> None:
    tls = conclude(armed(Sighting(Stage.TLS_REJECTED, None, "unknown ca")), BrowserSaw.ERROR, "")
    assert tls.error and "certificate" in tls.error
    upstream = conclude(
        armed(Sighting(Stage.UPSTREAM_ERROR, None, "connection refused")), BrowserSaw.RESPONSE, ""
    )
    assert upstream.error and "could not fetch" in upstream.error
    nothing = conclude(armed(), BrowserSaw.TIMEOUT, "no answer in 15000 ms")
    assert nothing.error and "no request" in nothing.error
    undecrypted = conclude(
        armed(Sighting(Stage.REFUSED, Observation(None, False, None, None, "must decrypt", "x"))),
        BrowserSaw.ERROR,
        "",
    )
    assert undecrypted.error == "must decrypt"
    for expect in (Expect.BLOCKED, Expect.ALLOWED):
        case = CheckCase("c", URL, "social", frozenset(), expect)
        for seen in (tls, upstream, nothing, undecrypted):
            assert classify(case, seen) is Outcome.ERROR


def test_an_answer_the_gateway_never_saw_is_not_filtered() -> None:
    seen = conclude(armed(), BrowserSaw.RESPONSE, "")
    assert not seen.blocked and seen.error is None and "unfiltered" in seen.evidence


# -- user agents ---------------------------------------------------------------------------

AGENTS = [
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Chrome 120",
        "ChromeOS",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.2 Mobile/15E148 Safari/604.1",
        "Safari 17",
        "iPadOS 17",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Edge 131",
        "Windows 10/11",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox 121",
        "macOS",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
        "Samsung Internet 23",
        "Android 14",
    ),
    ("curl/8.5.0", None, None),
]


@pytest.mark.parametrize(("agent", "browser", "os"), AGENTS)
def test_browser_and_os_from_the_user_agent(agent: str, browser: str, os: str) -> None:
    assert (browser_of(agent), os_of(agent)) == (browser, os)


# -- the page --------------------------------------------------------------------------------

SUITE = """\
name: Page test suite
cases:
  - {id: adult, url: "http://adult.test/", category: adult, expect: blocked}
  - {id: lessons, url: "https://lessons.test/", category: education, expect: allowed}
  - {id: staff-only, url: "http://staff.test/", category: x, expect: allowed, profiles: [staff]}
"""


def suite_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(SUITE)
    return path


class Page:
    def __init__(self, app: Flask, store: Store, book: ProbeBook, policy: Policy) -> None:
        self.app, self.store, self.book, self.policy = app, store, book, policy

    def client(self, ip: str = "10.1.1.1") -> Any:
        client = self.app.test_client()
        client.environ_base["REMOTE_ADDR"] = ip
        return client


@pytest.fixture
def page(db_url: str, tmp_path: Path) -> Iterator[Page]:  # noqa: F811
    store = Store.open(db_url)
    policy = load_policy(copy_policy(tmp_path))
    suite: Suite = load_suite(suite_file(tmp_path / "suite"))
    book = ProbeBook()
    app = Flask("test-portal")
    add_check_page(
        app,
        loaded=lambda: (policy, suite),
        profile_of=lambda user, ip: resolve_profile(policy, Identity(user, (), ip))[0].name,
        record=lambda run: record_run(store, run),
        book=book,
        who=lambda: (None, request.remote_addr),
        school=lambda: policy.school,
        clock=lambda: datetime.now(UTC),
    )
    yield Page(app, store, book, policy)
    store.dispose()


def start(client: Any, **form: str) -> Any:
    data = {"by": "Ms Rivera", "device_type": "iPad", **form}
    return client.post("/checks", data=data, headers={"User-Agent": AGENTS[1][0]})


def test_the_page_asks_who_and_what_device(page: Page) -> None:
    client = page.client()
    shown = client.get("/checks")
    assert shown.status_code == 200
    text = shown.get_data(as_text=True)
    assert "Early years" in text and "<strong>2</strong> tests" in text  # not staff-only
    assert "script-src 'self'" in shown.headers["Content-Security-Policy"]
    assert client.get("/check").headers["Location"].endswith("/checks")
    secure = client.get("/checks", base_url="https://schoolgate.local")
    assert secure.status_code == 302 and secure.headers["Location"].startswith("http://")
    for form, problem in (
        ({"by": " "}, "Please give your name"),
        ({"device_type": "Toaster"}, "choose the type of device"),
    ):
        refused = start(client, **form)
        assert refused.status_code == 400 and problem in refused.get_data(as_text=True)
    assert load_runs(page.store) == []


def test_a_run_belongs_to_the_address_that_started_it(page: Page) -> None:
    client = page.client()
    started = start(client, device_name="IPAD-07")
    assert started.status_code == 303
    run_path = started.headers["Location"]
    token = run_path.rsplit("/", 1)[1]
    assert client.get(run_path).status_code == 200
    other = page.client("10.1.1.2")
    assert other.get(run_path).status_code == 404
    assert other.post(f"{run_path}/arm", json={"case": "adult"}).status_code == 404
    assert client.get("/checks/run/not-a-token").status_code == 404
    # JSON only: a form posted from another site is refused.
    assert client.post(f"{run_path}/arm", data={"case": "adult"}).status_code == 400
    assert client.post(f"{run_path}/arm", json={"case": "staff-only"}).status_code == 400
    assert client.post(f"{run_path}/result", json={"case": "adult", "saw": "x"}).status_code == 400
    not_armed = client.post(f"{run_path}/result", json={"case": "adult", "saw": "error"})
    assert not_armed.status_code == 409
    assert client.post(f"{run_path}/finish", json={}).status_code == 409  # cases not tried
    # The gateway's witness notes what it did (here by hand: the real one is in Chromium).
    for case_id, seen in (("adult", blocked()), ("lessons", allowed())):
        armed_answer = client.post(f"{run_path}/arm", json={"case": case_id})
        assert armed_answer.status_code == 200 and armed_answer.json["timeout_ms"] > 0
        probe = page.book.watching("10.1.1.1", host_of(armed_answer.json["url"]))
        assert probe is not None and probe.key == f"{token}/{case_id}"
        page.book.note(probe, Sighting(Stage.RESPONSE, seen))
        judged = client.post(f"{run_path}/result", json={"case": case_id, "saw": "response"})
        assert judged.json["outcome"] == "pass", judged.json
    done = client.post(f"{run_path}/finish", json={})
    assert done.status_code == 200 and (done.json["passed"], done.json["failed"]) == (2, 0)
    again = client.post(f"{run_path}/finish", json={})
    assert again.json["run_id"] == done.json["run_id"]  # recorded once
    [stored] = load_runs(page.store)
    run: CheckRun = stored.run
    assert (run.source, run.device_type, run.device_id) == ("browser", "iPad", "IPAD-07")
    assert (run.browser, run.os, run.profile) == ("Safari 17", "iPadOS 17", "early_years")
