"""`schoolgate account add`, run as the IT provider setting up a new school's console: every
role the console knows can be given, the headteacher's and a governor's included."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.cli.account_args import ACCOUNT_ROLES
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts
from proxy_addons.workflow.accounts import ROLES, get_account
from tests.conftest import ROOT, VENV_BIN
from tests.pg import sqlite_url

POLICY = str(ROOT / "tests/data/policy/school.yaml")


def account_add(var: Path, user: str, role: str, *more: str) -> subprocess.CompletedProcess[str]:
    """The real command, as the IT provider types it, the password on standard input."""
    return subprocess.run(
        [str(VENV_BIN / "schoolgate"), "account", "add", user, "--role", role, *more,
         "--password-stdin", "--policy", POLICY, "--var", str(var)],
        input="long enough passphrase\n",
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHOOLGATE_")},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_the_command_offers_every_role_an_account_can_hold() -> None:
    assert set(ACCOUNT_ROLES) == ROLES


def test_the_headteacher_and_a_governor_get_accounts(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    for user, role in (("mrs.okafor", "headteacher"), ("mr.price", "governor")):
        added = account_add(var, user, role, "--name", f"{role} {user}")
        assert added.returncode == 0, added.stderr
        assert f"account {user} with roles {role}" in added.stdout
    store = Store.open(sqlite_url(var))
    head, governor = get_account(store, "mrs.okafor"), get_account(store, "mr.price")
    assert head is not None and set(head.roles) == {"headteacher"}
    assert governor is not None and set(governor.roles) == {"governor"}
    assert head.display_name == "headteacher mrs.okafor"


def test_the_name_pupils_are_told_is_given_with_the_account(tmp_path: Path) -> None:
    # A pupil's report's thank-you page names who will read it by this name, so the DSL is
    # "Mrs Patel", not "mrs.patel"; left out, it is the user name.
    assert account_add(tmp_path, "mrs.patel", "dsl", "--name", " Mrs Patel ").returncode == 0
    assert account_add(tmp_path, "mr.jones", "deputy").returncode == 0
    store = Store.open(sqlite_url(tmp_path))
    dsl, deputy = get_account(store, "mrs.patel"), get_account(store, "mr.jones")
    assert dsl is not None and dsl.display_name == "Mrs Patel"
    assert deputy is not None and deputy.display_name == "mr.jones"


def test_an_unknown_role_is_refused_with_the_roles_there_are(tmp_path: Path) -> None:
    refused = account_add(tmp_path, "x", "caretaker")
    assert refused.returncode == 2
    assert "headteacher" in refused.stderr and "governor" in refused.stderr


def test_a_real_account_costs_bcrypt_twelve_rounds(tmp_path: Path) -> None:
    # The tests' own in-process accounts use 4 rounds for speed (tests/conftest.py); the
    # command an IT provider runs must keep the shipped cost.
    assert account_add(tmp_path, "mrs.patel", "dsl").returncode == 0
    store = Store.open(sqlite_url(tmp_path))
    with store.connect() as conn:
        stored = conn.execute(
            sa.select(accounts.c.password_hash).where(accounts.c.username == "mrs.patel")
        ).scalar_one()
    assert stored.startswith("$2b$12$")
