"""The `schoolgate policy` command's arguments (its work is in cli/policy.py, loaded only when
it runs, as main.py does for every command)."""

from __future__ import annotations

import argparse

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
    explain.add_argument("--at", help="ISO time, e.g. 2026-11-25T12:30 (school time zone)")
    explain.add_argument(
        "--host-only", action="store_true", help="decide on the host name only (no decryption)"
    )
    explain.add_argument("--host-header", help="a Host header naming another site than the URL")
    explain.add_argument("--sni", help="a TLS server name naming another site than the URL")
    _runs(explain, "policy:cmd_policy_explain")


__all__ = ["add_policy"]
