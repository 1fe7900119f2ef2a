"""`schoolgate ca init | server-cert | show`: the school's own CA (see school_ca.py) and the
gateway's HTTPS certificate issued from it (server_cert.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops import school_ca, server_cert


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else Path(args.var) / "ca"


def _print(info: school_ca.CAInfo) -> None:
    print(f"subject:      {info.subject}")
    print(f"SHA-256:      {info.fingerprint_sha256}")
    print(f"valid from:   {info.not_before:%Y-%m-%d %H:%M} UTC")
    print(f"valid until:  {info.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"key:          {info.key}")
    print(f"certificate:  {info.path}")


def policy_names(path: Path) -> list[str]:
    """The names the policy gives the gateway: its portal host, the web app's and the proxy's
    host; none (with a warning) when the policy can't be read yet."""
    try:
        policy = load_policy(path)
    except (PolicyError, OSError) as exc:
        print(f"schoolgate: the policy's names left out ({exc})", file=sys.stderr)
        return []
    found = [
        policy.portal_host,
        server_cert.host_of(policy.unblocks.web_url),
        server_cert.host_of(policy.proxy_address),
    ]
    return [name for name in found if name]


def _issue_server_cert(args: argparse.Namespace) -> None:
    entries = list(args.name)
    if not args.only:
        names, addresses = server_cert.own_names()
        entries += policy_names(Path(args.policy)) + names + [str(a) for a in addresses]
    info = server_cert.issue(_folder(args), Path(args.var), entries)
    print(f"HTTPS certificate for: {', '.join(info.names + info.addresses)}")
    print(f"valid until:  {info.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"certificate:  {info.cert}")
    print(f"key:          {info.key}")
    print("Restart the web app to use it: systemctl restart schoolgate-web", file=sys.stderr)


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
            _issue_server_cert(args)
            return 0
        if args.ca_command == "server-cert":
            if args.if_due and not server_cert.needs_renewal(Path(args.var)):
                print("The gateway's HTTPS certificate is current: nothing to do.")
                return 0
            _issue_server_cert(args)
            return 0
        _print(school_ca.describe(folder))
        return 0
    except (school_ca.CAError, server_cert.CertError) as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
