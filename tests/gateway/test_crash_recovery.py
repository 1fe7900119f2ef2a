"""A gateway killed outright (SIGKILL, as a crash or a power cut leaves it) comes back with
every unblock, queued alert and setting, and sends the queued alert once its channel is up."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.controller import Controller

from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import accounts, alert_outbox, unblocks
from tests.alerts.test_notify import Mailbox
from tests.conftest import ROOT, VENV_BIN, Upstream, free_port, start_mitmdump
from tests.gateway.test_alerting_e2e import SEARCH, policy_with_alerts, wait_for
from tests.gateway.test_gateway_e2e import body_and_status

SCHOOLGATE = str(VENV_BIN / "schoolgate")
QUIET = ["--set", "schoolgate_metrics_port=0"]


def sg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCHOOLGATE, *args], capture_output=True, text=True, cwd=ROOT, input=stdin, timeout=60
    )


def test_the_sqlite_store_syncs_every_commit(tmp_path: Path) -> None:
    store = Store.open(store_url(tmp_path))
    with store.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.dispose()


def test_a_killed_gateway_comes_back_with_everything_and_sends_the_queued_alert(
    tmp_path: Path, upstream: Upstream
) -> None:
    smtp_port = free_port()  # the mail server is down: nothing listens here yet
    policy = policy_with_alerts(
        tmp_path,
        f"  email: {{host: 127.0.0.1, port: {smtp_port}, starttls: false,"
        " sender: schoolgate@test.example}\n",
    )
    var = tmp_path / "var"
    where = ["--policy", str(policy), "--var", str(var)]
    first = start_mitmdump(policy, var, upstream, extra=QUIET)
    try:
        # Blocked for a pupil until a DSL approves an unblock for the class's profile.
        page = "http://chatter.test/lesson-plan"
        assert body_and_status(first.curl(page, user="pupil:p-pass"))[1] == 403
        asked = sg(
            "unblock", "request", "chatter.test", "--scope", "domain", "--as", "teacher",
            "--for-profile", "ks2", "--minutes", "120", "--reason", "debate on social media",
            *where,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        unblock_id = asked.stdout.split()[0]
        approved = sg("unblock", "approve", unblock_id, "--as", "dsl", "--comment", "ok", *where)
        assert approved.returncode == 0, approved.stderr
        pending = sg(
            "unblock", "request", "https://friends.test/club", "--as", "teacher",
            "--for-profile", "ks2", "--minutes", "60", "--reason", "after-school club", *where,
        )  # fmt: skip
        assert pending.returncode == 0, pending.stderr
        added = sg(
            "account", "add", "head", "--role", "dsl", "--password-stdin", *where,
            stdin="long enough passphrase\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        wait_for(
            lambda: body_and_status(first.curl(page, user="pupil:p-pass"))[1] == 200, timeout=15
        )
        # A self-harm search: a safeguarding alert for the DSL, which can't be mailed yet.
        assert body_and_status(first.curl(SEARCH, user="pupil:p-pass"))[1] == 200
        wait_for(lambda: "not sent via email" in first.log_text(), timeout=15)
    finally:
        first.process.send_signal(signal.SIGKILL)  # no shutdown, no flush, no goodbye
        first.process.wait(10)
    assert first.process.returncode == -signal.SIGKILL

    store = Store.open(store_url(var))
    with store.connect() as conn:
        before_unblocks = conn.execute(sa.select(unblocks).order_by(unblocks.c.id)).all()
        queued = conn.execute(
            sa.select(alert_outbox).where(alert_outbox.c.status == "pending")
        ).all()
        heads = conn.execute(sa.select(accounts.c.username)).scalars().all()
    store.dispose()
    assert {u.status for u in before_unblocks} == {"active", "pending"}
    assert [q.kind for q in queued if q.channel == "email"].count("risk_phrase") == 1
    assert "head" in heads

    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    shutil.move(var / "gateway.log", tmp_path / "first.log")
    second = start_mitmdump(policy, var, upstream, extra=QUIET)
    try:

        def alerts() -> list[object]:
            return [
                m for m in mailbox.messages if m.message["X-Schoolgate-Kind"] == "alert.risk_phrase"
            ]

        [mail] = wait_for(alerts, timeout=20)
        assert "Search: how to k1ll mys3lf" in mail.message.get_content()
        # The unblock is still in force in the restarted gateway, without anyone acting.
        assert body_and_status(second.curl(page, user="pupil:p-pass"))[1] == 200
        assert body_and_status(second.curl("http://friends.test/", user="pupil:p-pass"))[1] == 403
        time.sleep(1.0)
        assert len(alerts()) == 1  # sent once
    finally:
        second.stop()
        smtp.stop()

    store = Store.open(store_url(var))
    with store.connect() as conn:
        after_unblocks = conn.execute(sa.select(unblocks).order_by(unblocks.c.id)).all()
        left = (
            conn.execute(
                sa.select(alert_outbox.c.status).where(alert_outbox.c.kind == "risk_phrase")
            )
            .scalars()
            .all()
        )
    store.dispose()
    assert after_unblocks == before_unblocks
    assert left == ["sent"]
    listed = sg("unblock", "list", *where)
    assert unblock_id in listed.stdout and "active" in listed.stdout
    verified = sg("audit", "verify", *where)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stderr
