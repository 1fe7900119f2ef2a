"""The `schoolgate account` command's arguments (its work is in cli/account.py, loaded only
when it runs, as main.py does for every command)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Commands = argparse._SubParsersAction  # type: ignore[type-arg]
StoreArgs = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
# workflow.accounts.ROLES (which loads SQLAlchemy and bcrypt); a test keeps the two the same.
ACCOUNT_ROLES = ["staff", "dsl", "deputy", "it", "headteacher", "governor"]


def add_account(sub: Commands, store_args: StoreArgs) -> None:
    """`account add`."""
    acc = sub.add_parser("account", help="web app accounts")
    accsub = acc.add_subparsers(dest="account_command", required=True)
    add = accsub.add_parser("add")
    add.add_argument("username")
    add.add_argument("--role", action="append", required=True, choices=ACCOUNT_ROLES)
    add.add_argument("--email")
    add.add_argument("--name", help='the name pupils and staff are told, e.g. "Mrs Patel"')
    add.add_argument("--password-stdin", action="store_true")
    store_args(add)
    acc.set_defaults(handler="account:cmd_account")


__all__ = ["ACCOUNT_ROLES", "add_account"]
