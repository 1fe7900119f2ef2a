"""`schoolgate account add`: accounts for the admin web app."""

from __future__ import annotations

import argparse
import sys

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.workflow.accounts import AccountError, add_account


def cmd_account(args: argparse.Namespace) -> int:
    _, store = open_policy_and_store(args)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if not password:
        print("schoolgate: give the password on standard input (--password-stdin)", file=sys.stderr)
        return 1
    try:
        add_account(
            store, args.username, password, args.role, email=args.email, display_name=args.name
        )
    except AccountError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    print(f"account {args.username.lower()} with roles {', '.join(args.role)}")
    return 0
