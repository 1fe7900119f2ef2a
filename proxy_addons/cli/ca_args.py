"""`schoolgate ca ...` arguments: the school's CA and the gateway's own HTTPS certificate."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Commands = Any  # argparse's private _SubParsersAction


def add_ca(
    sub: Commands, runs: Callable[[argparse.ArgumentParser, str], None], var: str, policy: str
) -> None:
    ca = sub.add_parser("ca", help="the school's own certificate authority")
    casub = ca.add_subparsers(dest="ca_command", required=True)
    init = casub.add_parser(
        "init", help="create the school's CA (named for the school) and the gateway's certificate"
    )
    init.add_argument("--school", required=True, help='the school\'s name, e.g. "Oakfield Primary"')
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    server = casub.add_parser(
        "server-cert",
        help="(re)issue the gateway's HTTPS certificate (VAR/tls) from the school's CA",
    )
    show = casub.add_parser("show", help="subject, SHA-256 fingerprint and validity")
    for p in (init, server, show):
        p.add_argument("--var", default=var, help="state folder; the CA is in VAR/ca")
        p.add_argument("--dir", help="the CA folder (mitmproxy's confdir), instead of VAR/ca")
    for p in (init, server):
        p.add_argument(
            "--policy",
            default=policy,
            help="the policy: its portal_host and web_url's host are named",
        )
        p.add_argument(
            "--name",
            action="append",
            default=[],
            help="another name or IP address the gateway is reached by (repeat for more)",
        )
        p.add_argument(
            "--only",
            action="store_true",
            help="name only the --name entries, not this machine's names and addresses",
        )
    server.add_argument(
        "--if-due",
        action="store_true",
        help="only when there is none or it ends within 30 days (install.sh, timers)",
    )
    runs(ca, "ca:cmd_ca")


__all__ = ["add_ca"]
