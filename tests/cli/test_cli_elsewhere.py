"""`schoolgate` run outside the Schoolgate folder: a clear error naming the missing file or
folder and what to do, never a traceback, and no empty store made in the wrong place."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from proxy_addons.cli.args import missing_defaults
from tests.conftest import ROOT, VENV_BIN
from tests.support.cli_in_process import schoolgate as in_process

COMMANDS = [
    ["audit", "verify"],
    ["audit", "export"],
    ["unblock", "list"],
    ["unblock", "approve", "UB-AAAAAA", "--as", "dsl"],
    ["log", "search"],
    ["devices", "list"],
    ["report", "--term", "Autumn"],
    ["checks", "list"],
    ["backup", "--to", "backups"],
    ["lists", "update"],
    ["policy", "explain", "https://example.com/"],
    ["store", "upgrade"],
    ["status"],
    ["web"],
]


def schoolgate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCHOOLGATE_")}
    return subprocess.run(
        [str(VENV_BIN / "schoolgate"), *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_command_from_another_folder_says_what_is_missing(
    tmp_path: Path, command: list[str]
) -> None:
    # In this process (the entry point, in tmp_path, without SCHOOLGATE_ settings): a new
    # Python for each of the fourteen costs seconds; the tests below run the real command.
    result = in_process(*command, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "run schoolgate in the Schoolgate folder" in result.stderr
    assert str(tmp_path) in result.stderr  # where it looked
    assert list(tmp_path.iterdir()) == []  # no var/, no store, no backup made here


def test_the_reported_case_audit_verify_with_the_policy_given(tmp_path: Path) -> None:
    policy = str(ROOT / "tests/data/policy/school.yaml")
    result = schoolgate(tmp_path, "audit", "verify", "--policy", policy)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no state folder at var" in result.stderr and "--var DIR" in result.stderr


def test_an_environment_default_that_is_missing_names_the_variable(tmp_path: Path) -> None:
    result = schoolgate(
        tmp_path, "unblock", "list", SCHOOLGATE_POLICY=str(tmp_path / "nowhere.yaml")
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "(from SCHOOLGATE_POLICY)" in result.stderr and "nowhere.yaml" in result.stderr


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--var", "/etc/hostname"], "File exists"),  # a file where the folder should be
        (["--policy", "/nonexistent/school.yaml"], "cannot read the file"),
    ],
)
def test_bad_explicit_paths_are_a_message_not_a_traceback(
    tmp_path: Path, extra: list[str], words: str
) -> None:
    base = ["--policy", str(ROOT / "tests/data/policy/school.yaml"), "--var", str(tmp_path)]
    result = schoolgate(tmp_path, "audit", "verify", *base, *extra)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and words in result.stderr


def test_first_run_and_ca_init_may_make_the_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("")
    for command in ("run", "ca", "restore", "doctor"):
        args = argparse.Namespace(command=command, policy="p.yaml", var="var")
        assert missing_defaults(args, "p.yaml", "var") is None
    args = argparse.Namespace(command="audit", policy="p.yaml", var="var")
    assert "no state folder at var" in str(missing_defaults(args, "p.yaml", "var"))
    explicit = argparse.Namespace(command="audit", policy="p.yaml", var="elsewhere")
    assert missing_defaults(explicit, "p.yaml", "var") is None  # asked for: it is made
