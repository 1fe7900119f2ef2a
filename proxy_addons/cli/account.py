"""`schoolgate account ...`: the admin web app's accounts, managed by the IT provider."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from proxy_addons.cli.common import fail, open_policy_and_store
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.workflow import account_admin, two_factor
from proxy_addons.workflow.accounts import Account, AccountError, add_account, normalise_username


def cmd_account(args: argparse.Namespace) -> int:
    policy, store = open_policy_and_store(args)
    try:
        return _run(args, policy, store)
    except AccountError as exc:
        return fail(f"schoolgate: {exc}")


def _run(args: argparse.Namespace, policy: Policy, store: Store) -> int:
    command = args.account_command
    if command == "list":
        _print_list(account_admin.list_accounts(store), policy)
        return 0
    if command in ("add", "reset-password"):
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        if not password:
            return fail("schoolgate: give the password on standard input (--password-stdin)")
        if command == "add":
            add_account(
                store, args.username, password, args.role, email=args.email, display_name=args.name
            )
            print(f"account {args.username.lower()} with roles {', '.join(args.role)}")
            return 0
        ended = account_admin.reset_password(store, args.username, password, args.actor)
        print(f"new password for {_name(args)}; {_sessions(ended)} ended")
        return 0
    if command == "disable":
        ended = account_admin.disable(store, args.username, args.actor)
        print(f"account {_name(args)} disabled; {_sessions(ended)} ended")
    elif command == "enable":
        account_admin.enable(store, args.username, args.actor)
        print(f"account {_name(args)} enabled")
    elif command == "reset-2fa":
        ended = account_admin.reset_two_factor(store, args.username, args.actor)
        print(f"two-factor sign-in off for {_name(args)} (enrols again at the next sign-in); "
              f"{_sessions(ended)} ended")  # fmt: skip
    elif command == "remove":
        account_admin.remove(store, args.username, args.actor)
        print(f"account {_name(args)} removed (its audit records stay)")
    return 0


def _name(args: argparse.Namespace) -> str:
    return normalise_username(args.username)


def _sessions(count: int) -> str:
    return "1 session" if count == 1 else f"{count} sessions"


def _when(at: datetime | None, policy: Policy) -> str:
    return at.astimezone(policy.timezone).strftime("%Y-%m-%d %H:%M") if at else "never"


def _print_list(found: list[Account], policy: Policy) -> None:
    """One line an account, in aligned columns."""
    rows = [("USER", "NAME", "ROLES", "EMAIL", "2FA", "STATE", "LAST SIGN-IN")]
    for a in found:
        second = "on" if a.two_factor else "off"
        if not a.two_factor and two_factor.required_for(policy, a):
            second = "off (required: asked at sign-in)"
        state = f"disabled by {a.disabled_by or '?'}" if a.disabled else "enabled"
        roles = ",".join(sorted(a.roles)) or "-"
        last = _when(a.last_sign_in_at, policy)
        rows.append((a.username, a.display_name, roles, a.email or "-", second, state, last))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if not found:
        print("(no accounts yet: schoolgate account add NAME --role ROLE --password-stdin)")
