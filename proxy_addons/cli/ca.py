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
