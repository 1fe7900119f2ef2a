"""`schoolgate account ...`, run as the IT provider setting up and looking after a school's
console on a real store: every role can be given; list, disable (sessions end), enable,
reset-password, remove (never the last DSL or IT provider), each audited."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.cli.account_args import ACCOUNT_ROLES
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts, audit_log
from proxy_addons.workflow import sessions as web_sessions
from proxy_addons.workflow.account_admin import record_sign_in
from proxy_addons.workflow.accounts import ROLES, check_password, get_account
from tests.conftest import ROOT, VENV_BIN
from tests.pg import sqlite_url
from tests.support.cli_in_process import schoolgate

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


def account(var: Path, *words: str, password: str = "") -> subprocess.CompletedProcess[str]:
    """`schoolgate account WORDS...` as the IT provider types it."""
    return subprocess.run(
        [str(VENV_BIN / "schoolgate"), "account", *words, "--policy", POLICY, "--var", str(var)],
        input=password,
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHOOLGATE_")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def in_process(var: Path, *words: str) -> subprocess.CompletedProcess[str]:
    """`schoolgate account WORDS...` without a process of its own (tests/support/cli_in_process:
    the same entry point), for steps on the way; every account command also runs for real."""
    return schoolgate("account", *words, "--policy", POLICY, "--var", str(var),
                      input="long enough passphrase\n")  # fmt: skip


def _actions(store: Store) -> list[tuple[str, str, str]]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    return [(r.actor, r.action, r.subject) for r in rows]


def test_list_shows_roles_email_two_factor_state_and_last_sign_in(tmp_path: Path) -> None:
    assert account_add(tmp_path, "mrs.patel", "dsl", "--email", "dsl@oakfield.example",
                       "--name", "Mrs Patel").returncode == 0  # fmt: skip
    assert account_add(tmp_path, "mr.smith", "staff").returncode == 0
    store = Store.open(sqlite_url(tmp_path))
    record_sign_in(store, "mrs.patel", datetime(2026, 12, 7, 9, 5, tzinfo=UTC))
    listed = account(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["USER", "NAME", "ROLES", "EMAIL", "2FA", "STATE", "LAST", "SIGN-IN"]
    smith = next(line for line in lines if line.startswith("mr.smith"))
    patel = next(line for line in lines if line.startswith("mrs.patel"))
    assert "dsl@oakfield.example" in patel and "Mrs Patel" in patel
    assert "2026-12-07 09:05" in patel  # in the school's time zone (GMT in December)
    assert "never" in smith and "enabled" in smith and " off " in smith


def test_disable_ends_sessions_at_once_and_enable_lets_them_back(tmp_path: Path) -> None:
    assert account_add(tmp_path, "mr.smith", "staff").returncode == 0
    store = Store.open(sqlite_url(tmp_path))
    now = datetime.now(UTC)
    live = web_sessions.start(store, "mr.smith", now, timedelta(hours=8))
    refused = in_process(tmp_path, "disable", "mr.smith")
    assert refused.returncode == 2 and "--as" in refused.stderr  # who did it is required
    done = account(tmp_path, "disable", "Mr.Smith", "--as", "it.support")
    assert done.returncode == 0, done.stderr
    assert "disabled; 1 session ended" in done.stdout
    assert web_sessions.user_of(store, live, now) is None
    smith = get_account(store, "mr.smith")
    assert smith is not None and smith.disabled and smith.disabled_by == "it.support"
    assert check_password(store, "mr.smith", "long enough passphrase") is None
    assert "disabled by it.support" in in_process(tmp_path, "list").stdout
    assert account(tmp_path, "enable", "mr.smith", "--as", "it.support").returncode == 0
    assert check_password(store, "mr.smith", "long enough passphrase") is not None
    assert _actions(store)[-2:] == [
        ("it.support", "account.disabled", "mr.smith"),
        ("it.support", "account.enabled", "mr.smith"),
    ]
    missing = in_process(tmp_path, "disable", "nobody", "--as", "it.support")
    assert missing.returncode == 1 and "no account 'nobody'" in missing.stderr


def test_reset_password_reads_standard_input_and_ends_sessions(tmp_path: Path) -> None:
    assert account_add(tmp_path, "mr.smith", "staff").returncode == 0
    store = Store.open(sqlite_url(tmp_path))
    now = datetime.now(UTC)
    live = web_sessions.start(store, "mr.smith", now, timedelta(hours=8))
    short = account(tmp_path, "reset-password", "mr.smith", "--as", "it.support",
                    "--password-stdin", password="short\n")  # fmt: skip
    assert short.returncode == 1 and "at least 8" in short.stderr
    assert web_sessions.user_of(store, live, now) == "mr.smith"  # nothing changed
    done = account(tmp_path, "reset-password", "mr.smith", "--as", "it.support",
                   "--password-stdin", password="a brand new passphrase\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert web_sessions.user_of(store, live, now) is None
    assert check_password(store, "mr.smith", "a brand new passphrase") is not None
    assert check_password(store, "mr.smith", "long enough passphrase") is None
    assert _actions(store)[-1] == ("it.support", "account.password_reset", "mr.smith")


def test_the_last_dsl_and_the_last_it_provider_are_never_removed(tmp_path: Path) -> None:
    for user, role in (("mrs.patel", "dsl"), ("it.support", "it"), ("mr.smith", "staff")):
        assert in_process(tmp_path, "add", user, "--role", role, "--password-stdin").returncode == 0
    for user, title in (("mrs.patel", "Designated Safeguarding Lead"), ("it.support", "IT")):
        refused = in_process(tmp_path, "remove", user, "--as", "mrs.okafor")
        assert refused.returncode == 1 and f"last enabled {title}" in refused.stderr
    # A second DSL, then the first may go; a disabled DSL doesn't count as the other one.
    added = in_process(tmp_path, "add", "mr.jones", "--role", "dsl", "--password-stdin")
    assert added.returncode == 0
    assert in_process(tmp_path, "disable", "mr.jones", "--as", "mrs.okafor").returncode == 0
    assert in_process(tmp_path, "remove", "mrs.patel", "--as", "mrs.okafor").returncode == 1
    assert in_process(tmp_path, "enable", "mr.jones", "--as", "mrs.okafor").returncode == 0
    removed = account(tmp_path, "remove", "mrs.patel", "--as", "mrs.okafor")  # the real command
    assert removed.returncode == 0, removed.stderr
    assert in_process(tmp_path, "remove", "mr.smith", "--as", "mrs.okafor").returncode == 0
    store = Store.open(sqlite_url(tmp_path))
    assert get_account(store, "mrs.patel") is None and get_account(store, "mr.smith") is None
    assert ("mrs.okafor", "account.removed", "mrs.patel") in _actions(store)
