"""docs/unblocks.md's own commands against the shipped example policy (policies/school.yaml,
with its e-mail lines filled in for a local SMTP server): a teacher added with
`account add --email` asks, the DSL decides, and the decision reaches the teacher's own
address, which no line of the policy names."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.alerts.test_notify import SmtpServer
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.conftest import ROOT, VENV_BIN


def example_policy(tmp_path: Path, smtp_port: int) -> Path:
    """policies/ copied, the commented-out e-mail settings made real for this test."""
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    policy = folder / "school.yaml"
    text = policy.read_text()
    assert "notifications:\n  contacts:\n" in text
    policy.write_text(
        text.replace(
            "notifications:\n",
            "notifications:\n"
            f"  email: {{host: 127.0.0.1, port: {smtp_port}, starttls: false,"
            " sender: schoolgate@oakfield.example}\n",
        )
    )
    return policy


def schoolgate(policy: Path, var: Path, *words: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(VENV_BIN / "schoolgate"), *words, "--policy", str(policy), "--var", str(var)],
        input=stdin,
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHOOLGATE_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_requester_added_with_an_email_hears_of_the_decision(
    tmp_path: Path,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    policy, var = example_policy(tmp_path, plain_smtp_server.port), tmp_path / "var"
    mailbox = plain_smtp_server.mailbox
    before = len(mailbox.messages)
    # As docs/unblocks.md says, word for word but for the policy and var options.
    schoolgate(policy, var, "account", "add", "mr.smith", "--role", "staff", "--name",
               "Mr Smith", "--email", "mr.smith@oakfield.example", "--password-stdin",
               stdin="long enough passphrase\n")  # fmt: skip
    asked = schoolgate(policy, var, "unblock", "request", "https://example.org/topic",
                       "--as", "mr.smith", "--for-profile", "ks2", "--minutes", "60",
                       "--reason", "Year 6 unit on discrimination")  # fmt: skip
    unblock_id = asked.split()[0]
    assert unblock_id.startswith("UB-")
    schoolgate(policy, var, "unblock", "approve", unblock_id, "--as", "mrs.patel",
               "--comment", "Fine for the lesson")  # fmt: skip
    sent = {str(m.message["Subject"]): sorted(m.rcpt_tos) for m in mailbox.messages[before:]}
    asked_subject = next(s for s in sent if s.startswith("Unblock request"))
    decided_subject = next(s for s in sent if "approved" in s)
    # The deciders from the policy's contacts; the decision to the requester's own address
    # (the account's) and the IT provider's (the policy's).
    assert sent[asked_subject] == ["deputy.dsl@oakfield.example", "dsl@oakfield.example"]
    assert sent[decided_subject] == ["helpdesk@it-provider.example", "mr.smith@oakfield.example"]
