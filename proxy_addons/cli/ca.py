"""`schoolgate ca init | show`: the school's own CA (see school_ca.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proxy_addons.ops import school_ca


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else Path(args.var) / "ca"


def _print(info: school_ca.CAInfo) -> None:
    print(f"subject:      {info.subject}")
    print(f"SHA-256:      {info.fingerprint_sha256}")
    print(f"valid from:   {info.not_before:%Y-%m-%d %H:%M} UTC")
    print(f"valid until:  {info.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"key:          {info.key}")
    print(f"certificate:  {info.path}")


def cmd_ca(args: argparse.Namespace) -> int:
    folder = _folder(args)
    try:
        if args.ca_command == "init":
            replacing = school_ca.exists(folder)
            info = school_ca.create(folder, args.school, force=args.force)
            _print(info)
            if replacing:
                print(
                    "The old CA is replaced: every device must now trust the new certificate, "
                    "and the gateway must be restarted.",
                    file=sys.stderr,
                )
            return 0
        _print(school_ca.describe(folder))
        return 0
    except school_ca.CAError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1


def add_parsers(sub: argparse._SubParsersAction, var: str) -> None:  # type: ignore[type-arg]
    ca = sub.add_parser("ca", help="the school's own certificate authority")
    casub = ca.add_subparsers(dest="ca_command", required=True)
    init = casub.add_parser("init", help="create the school's CA (named for the school)")
    init.add_argument("--school", required=True, help='the school\'s name, e.g. "Oakfield Primary"')
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    show = casub.add_parser("show", help="subject, SHA-256 fingerprint and validity")
    for p in (init, show):
        p.add_argument("--var", default=var, help="state folder; the CA is in VAR/ca")
        p.add_argument("--dir", help="the CA folder (mitmproxy's confdir), instead of VAR/ca")
    ca.set_defaults(func=cmd_ca)
