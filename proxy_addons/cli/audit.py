"""`schoolgate audit verify|export`: the tamper-evident audit trail."""

from __future__ import annotations

import argparse
import sys

from proxy_addons.cli.common import open_policy_and_store, school_time
from proxy_addons.core.typed_time import TimeTypedError
from proxy_addons.workflow import audit


def cmd_audit(args: argparse.Namespace) -> int:
    policy, store = open_policy_and_store(args)
    if args.audit_command == "verify":
        result = audit.verify(store)
        if result.ok:
            print(f"OK: {result.checked} audit records, chain intact")
            return 0
        print(f"BROKEN at record {result.broken_seq}: {result.problem}", file=sys.stderr)
        return 2
    try:
        start = school_time(args.start, policy, "--from")
        end = school_time(args.end, policy, "--to", end=True)
    except TimeTypedError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(audit.export(store, start, end, args.format))
    return 0
