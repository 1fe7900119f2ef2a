"""The `schoolgate policy` command's arguments (its work is in cli/policy.py, loaded only when
it runs, as main.py does for every command)."""

from __future__ import annotations

import argparse
import os

from proxy_addons.cli.args import add_store_arguments

Commands = argparse._SubParsersAction  # type: ignore[type-arg]


def _runs(parser: argparse.ArgumentParser, handler: str) -> None:
    parser.set_defaults(handler=handler)


def add_policy(sub: Commands, default_policy: str, default_var: str) -> None:
    """`policy check|explain`."""
    policy = sub.add_parser("policy", help="check or explain a policy").add_subparsers(
        dest="policy_command", required=True
    )
    check = policy.add_parser("check", help="validate a policy and its lists")
    check.add_argument("file")
    _runs(check, "policy:cmd_policy_check")
    explain = policy.add_parser("explain", help="show the decision for a URL and why")
    explain.add_argument("url")
    explain.add_argument("--policy", default=default_policy)
    explain.add_argument("--var", default=default_var)
    explain.add_argument("--user")
    explain.add_argument("--group", action="append", help="a directory group of the user")
    explain.add_argument("--ip")
    explain.add_argument(
        "--at", help="school time: 12:30, tomorrow, 2026-11-25 12:30 (default: now)"
    )
    explain.add_argument("--dsn", default=os.environ.get("SCHOOLGATE_DSN") or None)
    explain.add_argument(
        "--without-unblocks", action="store_true", help="leave out the unblocks in force"
    )
    explain.add_argument(
        "--host-only", action="store_true", help="decide on the host name only (no decryption)"
    )
    explain.add_argument("--host-header", help="a Host header naming another site than the URL")
    explain.add_argument("--sni", help="a TLS server name naming another site than the URL")
    _runs(explain, "policy:cmd_policy_explain")
    _add_changes(policy, default_policy, default_var)


CHANGE_KINDS = ("list-add", "list-remove", "category-add", "category-remove", "schedule-times")


def _add_changes(policy: Commands, default_policy: str, default_var: str) -> None:
    """`policy propose|approve|reject|withdraw|history`: filtering changes, two people each
    (cli/policy_changes.py; workflow/policy_changes.py)."""
    propose = policy.add_parser("propose", help="propose a filtering change, with its reason")
    propose.add_argument("kind", choices=CHANGE_KINDS)
    propose.add_argument("--as", dest="actor", required=True, help="your account's user name")
    propose.add_argument("--reason", required=True)
    propose.add_argument("--list", help="list-add/remove: e.g. lists/local/health.txt")
    propose.add_argument("--value", help="list-add/remove: the site, e.g. nhs.uk")
    propose.add_argument("--profile", help="category-add/remove: the profile")
    propose.add_argument("--rule", help="category-add/remove: the rule's number, 1 the first")
    propose.add_argument("--category", help="category-add/remove: the category")
    propose.add_argument("--schedule", help="schedule-times: the schedule")
    propose.add_argument(
        "--times", nargs="*", default=[], help="schedule-times: e.g. 12:00-13:15 (none: all day)"
    )
    approve = policy.add_parser("approve", help="approve someone else's change: it applies")
    approve.add_argument("id", type=int)
    approve.add_argument("--as", dest="actor", required=True)
    approve.add_argument("--note", default="")
    reject = policy.add_parser("reject", help="reject someone else's change, saying why")
    reject.add_argument("id", type=int)
    reject.add_argument("--as", dest="actor", required=True)
    reject.add_argument("--reason", required=True)
    withdraw = policy.add_parser("withdraw", help="take back your own proposal")
    withdraw.add_argument("id", type=int)
    withdraw.add_argument("--as", dest="actor", required=True)
    history = policy.add_parser("history", help="filtering changes, newest first")
    history.add_argument("--diff", type=int, metavar="ID", help="show one change's diff")
    history.add_argument("--pending", action="store_true", help="only those waiting")
    for parser, name in (
        (propose, "propose"),
        (approve, "approve"),
        (reject, "reject"),
        (withdraw, "withdraw"),
        (history, "history"),
    ):
        add_store_arguments(parser, default_policy, default_var)
        _runs(parser, f"policy_changes:cmd_{name}")


__all__ = ["CHANGE_KINDS", "add_policy"]
