"""The device agent end to end, through the real commands only.

`schoolgate web --cert --key` serves the device API over HTTPS (as on a gateway); the agent
runs as `schoolgate-agent enrol`, `run --once` (its real checks on this machine) and `send`,
trusting only the test CA; what they did is read back with `schoolgate devices list|show`
and from the alert outbox in the store. Then the gateway goes down while a report is made,
comes back, and the report arrives; then the device is revoked and enrolled again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.events import DEVICE_NONCOMPLIANT
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alert_outbox
from tests.conftest import ROOT, free_port, wait_for_port
from tests.devices.test_device_api import SECRET, Pki, make_pki, report
from tests.devices.test_device_watch import watched_policy

BIN = Path(sys.executable).parent


class Web:
    """`schoolgate web` as a process that the test can stop and start again on one port."""

    def __init__(self, policy: Path, var: Path, pki: Pki, log: Path) -> None:
        self.policy, self.var, self.pki, self.log = policy, var, pki, log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [str(BIN / "schoolgate"), "web", "--policy", str(self.policy)]
        cmd += ["--var", str(self.var), "--port", str(self.port)]
        cmd += ["--cert", str(self.pki.cert), "--key", str(self.pki.key)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for_port(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    pki = make_pki(tmp_path / "pki", "School")
    server = Web(watched_policy(tmp_path), tmp_path / "var", pki, tmp_path / "web.log")
    server.start()
    yield server
    server.stop()


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def outbox(var: Path) -> list[dict[str, Any]]:
    store = Store.open(store_url(var))
    try:
        with store.connect() as conn:
            rows = conn.execute(sa.select(alert_outbox).order_by(alert_outbox.c.id)).all()
    finally:
        store.dispose()
    return [{"kind": r.kind, "audience": r.audience, "event": r.event} for r in rows]


def test_agent_commands_against_the_running_gateway(web: Web, tmp_path: Path) -> None:
    state = str(tmp_path / "agent")
    gw = ["--policy", str(web.policy), "--var", str(web.var)]

    enrolled = run(
        "schoolgate-agent", "enrol", "--gateway", web.url, "--ca", str(web.pki.ca),
        "--secret-file", "-", "--hostname", "e2e-laptop", "--state", state,
        stdin=SECRET + "\n",
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = enrolled.stdout.split()[-1]
    assert re.fullmatch(r"dev-[0-9a-f]{16}", device_id)

    # The real checks on this machine, reported once.
    checked = run("schoolgate-agent", "check", "--format", "json")
    real = {r["id"]: r["status"] for r in json.loads(checked.stdout)["results"]}
    ran = run("schoolgate-agent", "run", "--once", "--state", state)
    assert ran.returncode == 0, ran.stderr
    assert "report: sent 1, waiting 0" in ran.stderr

    listed = run("schoolgate", "devices", "list", *gw)
    assert listed.returncode == 0, listed.stderr
    assert device_id in listed.stdout and "1 devices" in listed.stdout
    shown = run("schoolgate", "devices", "show", device_id, *gw)
    assert shown.returncode == 0, shown.stderr
    results = dict(re.findall(r"^  - (\w+): (\w+): ", shown.stdout, re.MULTILINE))
    assert set(results) == set(real)
    # The agent's own verdicts, except the OS one, which the gateway's EOL table decides.
    assert {k: v for k, v in results.items() if k != "os_supported"} == {
        k: v for k, v in real.items() if k != "os_supported"
    }
    evidence = next(
        r for r in json.loads(checked.stdout)["results"] if r["id"] == "disk_encryption"
    )
    for key in evidence["evidence"]:  # the raw evidence is shown under its check
        assert f"\n      {key}: " in shown.stdout
    failing = sorted(k for k, v in results.items() if v != "pass")
    raised = [a for a in outbox(web.var) if a["kind"] == DEVICE_NONCOMPLIANT]
    if failing:  # this machine's real state decides which case is tested
        assert "compliant: no" in shown.stdout
        assert [a["audience"] for a in raised] == ["technical"]
        event = raised[0]["event"]
        assert event["fields"]["checks"] == ", ".join(failing)
        assert event["fields"]["device_id"] == device_id
    else:
        assert "compliant: yes" in shown.stdout and raised == []

    # The gateway goes down; reports made meanwhile wait in the spool: all fixed, then
    # the firewall turned off (a new failure: an alert whatever this machine failed before).
    now = dt.datetime.now(dt.UTC)
    same = {"user": "later-user", "os_release": "ubuntu 24.04"}  # supported, by the EOL table
    fixed = report("replaced-by-the-agent", now - dt.timedelta(seconds=1), **same)
    off = [{"id": "firewall", "status": "fail", "reason": "turned off"}]
    broken = report("replaced-by-the-agent", now, results=off, **same)
    web.stop()
    for i, body in enumerate((fixed, broken), start=1):
        path = tmp_path / f"report-{i}.json"
        path.write_text(json.dumps(body))
        kept = run("schoolgate-agent", "send", str(path), "--state", state)
        assert kept.returncode == 0, kept.stderr
        assert f"sent 0, refused 0, waiting {i}" in kept.stdout
    # ... and arrive, in order, when it is back.
    web.start()
    flushed = run("schoolgate-agent", "send", "--state", state)
    assert "sent 2, refused 0, waiting 0" in flushed.stdout, flushed.stderr
    later = run("schoolgate", "devices", "show", device_id, *gw).stdout
    assert "user: later-user" in later and "- firewall: fail: turned off" in later
    raised = [a for a in outbox(web.var) if a["kind"] == DEVICE_NONCOMPLIANT]
    assert [a["event"]["fields"]["checks"] for a in raised][-1:] == ["firewall"]
    assert "later-user" not in json.dumps([a["event"] for a in raised])

    # Revoked: the next report is refused with the reason, and kept.
    revoked = run("schoolgate", "devices", "revoke", device_id, "--as", "tech", *gw)
    assert revoked.returncode == 0, revoked.stderr
    made = tmp_path / "report-3.json"
    made.write_text(json.dumps(report("x", dt.datetime.now(dt.UTC), user="after-revoke")))
    refused = run("schoolgate-agent", "send", str(made), "--state", state)
    assert "sent 0, refused 0, waiting 1" in refused.stdout
    assert "revoked on" in refused.stderr
    # Enrolled again under its id: the kept report goes with the new token.
    again = run(
        "schoolgate-agent", "enrol", "--gateway", web.url, "--ca", str(web.pki.ca),
        "--secret-file", "-", "--device-id", device_id, "--hostname", "e2e-laptop",
        "--state", state, stdin=SECRET + "\n",
    )  # fmt: skip
    assert again.returncode == 0 and again.stdout.split()[-1] == device_id, again.stderr
    sent = run("schoolgate-agent", "send", "--state", state)
    assert "sent 1, refused 0, waiting 0" in sent.stdout, sent.stderr
    assert "user: after-revoke" in run("schoolgate", "devices", "show", device_id, *gw).stdout
    web.stop()
    log = web.log.read_text()
    assert SECRET not in log and "Bearer" not in log
