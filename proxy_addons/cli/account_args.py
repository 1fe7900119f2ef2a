"""The `schoolgate account` command's arguments (its work is in cli/account.py, loaded only
when it runs, as main.py does for every command)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Commands = argparse._SubParsersAction  # type: ignore[type-arg]
StoreArgs = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
# workflow.accounts.ROLES (which loads SQLAlchemy and bcrypt); a test keeps the two the same.
ACCOUNT_ROLES = ["staff", "dsl", "deputy", "it", "headteacher", "governor"]
AS_HELP = "who is doing this (your own user name): it goes in the audit trail"


def add_account(sub: Commands, store_args: StoreArgs) -> None:
    """`account add | list | disable | enable | reset-password | reset-2fa | remove`."""
    acc = sub.add_parser("account", help="web app accounts")
    accsub = acc.add_subparsers(dest="account_command", required=True)
    add = accsub.add_parser("add", help="a new account (password on standard input)")
    add.add_argument("username")
    add.add_argument("--role", action="append", required=True, choices=ACCOUNT_ROLES)
    add.add_argument("--email", help="where this person's unblock decisions are sent")
    add.add_argument("--name", help='the name pupils and staff are told, e.g. "Mrs Patel"')
    add.add_argument("--password-stdin", action="store_true")
    store_args(add)
    listing = accsub.add_parser(
        "list", help="every account: roles, e-mail, two-factor, disabled, last sign-in"
    )
    store_args(listing)
    for name, text in (
        ("disable", "stop an account signing in; its sessions end at once"),
        ("enable", "let a disabled account sign in again"),
        ("reset-password", "a new password (on standard input); its sessions end"),
        ("reset-2fa", "two-factor off (a lost phone); enrols again at the next sign-in"),
        ("remove", "delete an account (never the last DSL or IT provider)"),
    ):
        one = accsub.add_parser(name, help=text)
        one.add_argument("username")
        one.add_argument("--as", dest="actor", required=True, metavar="WHO", help=AS_HELP)
        if name == "reset-password":
            one.add_argument("--password-stdin", action="store_true")
        store_args(one)
    acc.set_defaults(handler="account:cmd_account")


__all__ = ["ACCOUNT_ROLES", "add_account"]
