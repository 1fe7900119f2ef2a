"""Termly checks from the gateway, end to end: a real mitmdump gateway, the local test site
standing in for every test URL (hostnames sent to loopback by tests/support/local_upstream.py),
`schoolgate checks run` as a separate process, the store, and an aiosmtpd server for alerts.

The module's tests run in order on one gateway: a clean run per profile, then a broken policy
(a category no longer blocked), then over-blocking of an educational site.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.check_suite import Outcome
from proxy_addons.checks.identity import CHECK_HEADER, read_token
from proxy_addons.checks.records import StoredRun, load_runs
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alert_outbox
from tests.alerts.test_notify import SmtpServer
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.conftest import ROOT, VENV_BIN, Gateway, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status

SUITE = """\
name: Test termly suite
cases:
  - {id: iwf-test, url: "http://illegal.test/exact.html", category: child_sexual_abuse,
     expect: blocked}
  - {id: ctiru-test, url: "https://illegal.test/prefix/page.html", category: terrorism,
     expect: blocked}
  - {id: adult, url: "https://adult.test/", category: adult, expect: blocked}
  - {id: adult-url, url: "http://mixed.test/adult/page", category: adult, expect: blocked}
  - {id: social, url: "https://friends.test/", category: social, expect: blocked,
     profiles: [ks2, early_years]}
  - {id: games-blocked, url: "https://games.test/", category: games, expect: blocked,
     profiles: [early_years]}
  - {id: games-open, url: "https://games.test/play", category: games, expect: allowed,
     profiles: [ks2]}
  - {id: edu, url: "https://edu.test/lesson", category: educational, expect: allowed}
  - {id: safe-google, url: "https://www.google.com/search?q=volcano", category: safe_search,
     expect: safe_search, profiles: [ks2, early_years]}
"""


@dataclass
class Setup:
    gateway: Gateway
    smtp: SmtpServer | None = None

    @property
    def var(self) -> Path:
        return self.gateway.var

    def schoolgate(self, *args: str) -> subprocess.CompletedProcess[str]:
        common = ["--policy", str(self.gateway.policy), "--var", str(self.var)]
        return subprocess.run(
            [str(VENV_BIN / "schoolgate"), "checks", *args, *common],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    def run_check(self, profile: str) -> subprocess.CompletedProcess[str]:
        return self.schoolgate(
            "run", "--profile", profile, "--by", "tech", "--proxy", self.gateway.proxy
        )

    def runs(self) -> list[StoredRun]:
        store = Store.open(store_url(self.var))
        try:
            return load_runs(store)
        finally:
            store.dispose()

    def outbox_kinds(self) -> list[str]:
        store = Store.open(store_url(self.var))
        try:
            with store.connect() as conn:
                return list(conn.scalars(sa.select(alert_outbox.c.kind)))
        finally:
            store.dispose()

    def mails(self, kind: str) -> list[object]:
        assert self.smtp is not None
        return [m for m in self.smtp.mailbox.messages if m.message["X-Schoolgate-Kind"] == kind]

    def edit_policy(self, old: str, new: str, file: str = "school.yaml") -> None:
        """Change a policy file and wait until the gateway has reloaded it."""
        status = self.var / "run" / "status.json"

        def state() -> tuple[object, object]:
            found = json.loads(status.read_text())
            return found["reloads"], found["loaded_at"]

        before = state()
        path = self.gateway.policy.parent / file
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        deadline = time.monotonic() + 20
        while state() == before:
            assert time.monotonic() < deadline, "the gateway did not reload the policy"
            time.sleep(0.1)


class _HeaderEcho(http.server.BaseHTTPRequestHandler):
    """The plain-http test site: answers with the request line and every header it got."""

    def do_GET(self) -> None:
        payload = json.dumps(
            {"host": self.headers.get("Host"), "path": self.path, "headers": dict(self.headers)}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("checks")
    policy = copy_policy(tmp)
    (policy.parent / "checks.yaml").write_text(SUITE)
    text = policy.read_text().replace(
        "notifications:\n",
        "notifications:\n"
        f"  email: {{host: 127.0.0.1, port: {plain_smtp_server.port}, starttls: false,"
        " sender: schoolgate@test.example}\n",
    )
    text += (
        "checks:\n"
        "  suite: checks.yaml\n"
        "  remind: [tech]\n"
        "  due_after_days: 0\n"
        "  profiles: [ks2, early_years]\n"
    )
    policy.write_text(text)
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderEcho)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    ours = Upstream(site.server_address[1], upstream.https_port)
    gw = start_mitmdump(policy, tmp / "var", ours)
    deadline = time.monotonic() + 15  # the token is written when the add-ons are configured
    while not (gw.var / "check-token").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Setup(gw, plain_smtp_server)
    finally:
        gw.stop()
        site.shutdown()
        site.server_close()


def _outcomes(stored: StoredRun) -> dict[str, Outcome]:
    return {r.case_id: r.outcome for r in stored.run.results}


def test_the_gateway_reminds_the_named_people_when_no_check_is_done(setup: Setup) -> None:
    deadline = time.monotonic() + 15
    while not setup.mails("alert.check_due"):
        assert time.monotonic() < deadline, "no reminder was sent"
        time.sleep(0.1)
    [mail] = setup.mails("alert.check_due")
    assert mail.rcpt_tos == ["tech@test.example"]  # type: ignore[attr-defined]
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert "Whole year" in body and "early_years, ks2" in body
    due = setup.schoolgate("due")
    assert due.returncode == 3 and "not yet checked: early_years, ks2" in due.stdout


def test_the_check_identity_needs_the_gateway_token(setup: Setup) -> None:
    gw = setup.gateway
    token = read_token(setup.var)
    # Loopback without a check header is the default profile (early years): games blocked.
    assert body_and_status(gw.curl("https://games.test/"))[1] == 403
    wrong = ["--proxy-header", f"{CHECK_HEADER}: ks2 not-the-token"]
    assert body_and_status(gw.curl("https://games.test/", *wrong))[1] == 403
    right = ["--proxy-header", f"{CHECK_HEADER}: ks2 {token}"]
    body, status = body_and_status(gw.curl("https://games.test/", *right))
    assert status == 200 and json.loads(body)["host"] == "games.test"
    # On plain http the header rides on the request itself, and is removed before upstream.
    plain = ["-H", f"{CHECK_HEADER}: ks2 {token}"]
    body, status = body_and_status(gw.curl("http://games.test/echo", *plain))
    assert status == 200 and json.loads(body)["path"] == "/echo"
    seen = {k.lower() for k in json.loads(body)["headers"]}
    assert "host" in seen and CHECK_HEADER.lower() not in seen
    # A wrong token is ignored (default profile: games blocked) and not passed on either.
    body, status = body_and_status(gw.curl("http://games.test/echo", "-H", f"{CHECK_HEADER}: x y"))
    assert status == 403


def test_a_run_from_the_gateway_records_every_case_as_the_profile(setup: Setup) -> None:
    for profile in ("ks2", "early_years"):
        result = setup.run_check(profile)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 failed" in result.stdout
    early, ks2 = setup.runs()  # newest first
    assert ks2.run.profile == "ks2" and early.run.profile == "early_years"
    common = ("iwf-test", "ctiru-test", "adult", "adult-url", "social", "edu", "safe-google")
    assert _outcomes(ks2) == {case: Outcome.PASS for case in (*common, "games-open")}
    assert _outcomes(early) == {case: Outcome.PASS for case in (*common, "games-blocked")}
    # Safe search: the stand-in engine echoes the request it got, rewritten by the gateway.
    google = next(r for r in ks2.run.results if r.case_id == "safe-google")
    assert "safe search enforced" in google.evidence
    for stored in (ks2, early):
        run = stored.run
        assert (run.source, run.started_by, run.term) == ("gateway", "tech", "Whole year")
        assert run.device_type == "gateway" and run.suite == "Test termly suite"
        for r in run.results:
            if r.expected == "blocked":
                assert r.block_reference and r.block_reference.startswith("SG-")
                assert r.status == 403 and "block page" in r.evidence
            else:
                assert r.status == 200 and r.block_reference is None
    assert setup.mails("alert.check_failed") == []  # a clean run alerts nobody
    # Monitoring does not treat the canaries as a person's doing: the illegal-tier test entry
    # raised no illegal-tier alert (a person's request does: the last test shows it).
    time.sleep(1.0)
    assert setup.outbox_kinds().count("illegal_tier") == 0
    listing = setup.schoolgate("list")
    assert listing.returncode == 0 and listing.stdout.count("8 pass, 0 fail") == 2


def test_a_category_no_longer_blocked_fails_its_cases_and_alerts(setup: Setup) -> None:
    setup.edit_policy("- block: [adult, social, banking]", "- block: [social, banking]")
    result = setup.run_check("ks2")
    assert result.returncode == 2, result.stdout + result.stderr
    latest = setup.runs()[0]
    outcomes = _outcomes(latest)
    assert outcomes["adult"] is Outcome.FAIL and outcomes["adult-url"] is Outcome.FAIL
    assert {c for c, o in outcomes.items() if o is Outcome.FAIL} == {"adult", "adult-url"}
    assert outcomes["iwf-test"] is Outcome.PASS  # the illegal tier is not the policy's to drop
    adult = next(r for r in latest.run.results if r.case_id == "adult")
    assert adult.status == 200 and "adult.test" in adult.evidence
    # The IT provider and the DSL (and deputy) are both told, by email.
    deadline = time.monotonic() + 15
    while len(setup.mails("alert.check_failed")) < 2:
        assert time.monotonic() < deadline, "the check alerts were not sent"
        time.sleep(0.1)
    mails = setup.mails("alert.check_failed")
    recipients = sorted(addr for m in mails for addr in m.rcpt_tos)  # type: ignore[attr-defined]
    assert recipients == ["deputy@test.example", "dsl@test.example", "tech@test.example"]
    body = mails[0].message.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert "adult (adult: not blocked)" in body and f"check run {latest.id}" in body
    # The IT provider records what was done; the record keeps it with the case.
    acted = setup.schoolgate(
        "action", str(latest.id), "--case", "adult", "--by", "tech", "--text", "Re-added adult"
    )
    assert acted.returncode == 0, acted.stderr
    setup.edit_policy("- block: [social, banking]", "- block: [adult, social, banking]")
    assert [a.text for a in setup.runs()[0].actions] == ["Re-added adult"]


def test_over_blocking_an_educational_site_fails_its_case(setup: Setup) -> None:
    setup.edit_policy("friends.test\n", "friends.test\nedu.test\n", file="lists/social.txt")
    result = setup.run_check("ks2")
    assert result.returncode == 2
    outcomes = _outcomes(setup.runs()[0])
    assert {c for c, o in outcomes.items() if o is Outcome.FAIL} == {"edu"}
    edu = next(r for r in setup.runs()[0].run.results if r.case_id == "edu")
    assert edu.status == 403 and edu.block_reference
    setup.edit_policy("friends.test\nedu.test\n", "friends.test\n", file="lists/social.txt")


def test_the_report_lists_exactly_the_stored_results(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "report"
    made = setup.schoolgate("report", "--term", "Whole year", "--out", str(out))
    assert made.returncode == 0, made.stderr
    runs = setup.runs()
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    stored = sorted(
        (str(s.id), r.case_id, r.outcome.value, r.evidence) for s in runs for r in s.run.results
    )
    assert sorted((r["run"], r["case"], r["outcome"], r["evidence"]) for r in rows) == stored
    html = (out / "checks.html").read_text()
    assert html.count('<tr class="run">') == len(runs) == 4
    assert html.count('<tr class="failure">') == 3  # adult, adult-url, edu
    assert "Re-added adult" in html and "None yet" in html
    assert "Every profile was checked this term." in html
    due = setup.schoolgate("due")
    assert due.returncode == 0 and "done" in due.stdout


def test_a_persons_request_for_the_same_test_entry_does_alert(setup: Setup) -> None:
    """The control for the check identity's silence: without it, the tier alerts as ever."""
    assert body_and_status(setup.gateway.curl("http://illegal.test/exact.html"))[1] == 403
    deadline = time.monotonic() + 10
    while "illegal_tier" not in setup.outbox_kinds():
        assert time.monotonic() < deadline, "no illegal-tier alert for a person's request"
        time.sleep(0.1)


def test_with_proxy_sign_in_a_check_signs_in_and_still_runs_as_its_profile(
    tmp_path: Path, upstream: Upstream
) -> None:
    from tests.gateway.test_alerting_e2e import _htpasswd

    policy = copy_policy(tmp_path)
    (policy.parent / "checks.yaml").write_text(SUITE)
    _htpasswd(policy.parent / "users.htpasswd", {"teacher": "t-pass"})
    text = policy.read_text().replace(
        "identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:"
    )
    policy.write_text(text + "checks:\n  suite: checks.yaml\n  profiles: [early_years]\n")
    gw = start_mitmdump(policy, tmp_path / "var", upstream)
    try:
        deadline = time.monotonic() + 15
        while not (gw.var / "check-token").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        setup = Setup(gw)
        unsigned = setup.run_check("early_years")
        assert unsigned.returncode == 3  # nothing judged: neither passed nor failed
        assert "0 passed, 0 failed, 8 could not be judged" in unsigned.stdout
        assert "proxy sign-in (407)" in unsigned.stdout
        assert setup.schoolgate("due").returncode == 3  # a run of errors checks nothing
        signed = subprocess.run(
            [
                str(VENV_BIN / "schoolgate"),
                "checks",
                "run",
                "--profile",
                "early_years",  # the teacher is staff; the check is for early years
                "--by",
                "teacher",
                "--proxy",
                gw.proxy,
                "--proxy-user",
                "teacher",
                "--policy",
                str(policy),
                "--var",
                str(gw.var),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "SCHOOLGATE_CHECK_PROXY_PASSWORD": "t-pass"},
        )
        assert signed.returncode == 0, signed.stdout + signed.stderr
        latest = setup.runs()[0]
        assert latest.run.profile == "early_years" and latest.failed == 0
        assert _outcomes(latest)["games-blocked"] is Outcome.PASS  # staff would see games
        assert setup.schoolgate("due").returncode == 0  # now the term's check is done
    finally:
        gw.stop()
