"""`schoolgate policy propose|approve|reject|history`, the real command as the IT provider
and the DSL type it: a change waits for a second person, the proposer can't approve it,
the approval edits the file, and history shows who, why and the diff."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from proxy_addons.store import Store
from proxy_addons.workflow.accounts import add_account
from tests.conftest import ROOT, VENV_BIN
from tests.pg import sqlite_url
from tests.support.cli_in_process import schoolgate as in_process


def schoolgate(folder: Path, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "schoolgate"), "policy", *words,
         "--policy", str(folder / "policies/school.yaml"), "--var", str(folder / "var")],
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHOOLGATE_")},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def here(folder: Path, *words: str) -> subprocess.CompletedProcess[str]:
    """As `schoolgate` above in this process (tests/support/cli_in_process), for the steps
    whose command the test also runs for real."""
    return in_process("policy", *words, "--policy", str(folder / "policies/school.yaml"),
                      "--var", str(folder / "var"))  # fmt: skip


def test_propose_refuse_self_approval_approve_history(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (tmp_path / "var").mkdir()
    store = Store.open(sqlite_url(tmp_path / "var"))
    add_account(store, "it.support", "a long password 1", ["it"])
    add_account(store, "mrs.patel", "a long password 2", ["dsl"])
    lunch = ["schedule-times", "--schedule", "lunch", "--times", "12:00-13:30"]
    proposed = schoolgate(tmp_path, "propose", *lunch, "--as", "it.support", "--reason", "Clubs")
    assert proposed.returncode == 0, proposed.stderr
    assert '+    times: ["12:00-13:30"]' in proposed.stdout
    assert "schoolgate policy approve 1 --as NAME" in proposed.stdout
    own = here(tmp_path, "approve", "1", "--as", "it.support")
    assert own.returncode == 1 and "Nobody approves their own change" in own.stderr
    approved = schoolgate(tmp_path, "approve", "1", "--as", "mrs.patel")
    assert approved.returncode == 0, approved.stderr
    assert 'times: ["12:00-13:30"]' in (tmp_path / "policies/school.yaml").read_text()
    second = here(
        tmp_path, "propose", "list-add", "--list", "lists/local/health.txt", "--value",
        "healthforkids.co.uk", "--as", "mrs.patel", "--reason", "Health week",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    refused = schoolgate(tmp_path, "reject", "2", "--as", "it.support", "--reason", "Not needed")
    assert refused.returncode == 0, refused.stderr
    history = schoolgate(tmp_path, "history")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert "rejected" in lines[0] and "Add healthforkids.co.uk" in lines[0]
    assert "proposed by it.support, applied by mrs.patel; reason: Clubs" in history.stdout
    one = here(tmp_path, "history", "--diff", "1")
    assert '-    times: ["12:00-13:15"]' in one.stdout
