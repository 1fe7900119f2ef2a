"""`schoolgate audit verify|export`: the tamper-evident audit trail."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.workflow import audit


def cmd_audit(args: argparse.Namespace) -> int:
    _, store = open_policy_and_store(args)
    if args.audit_command == "verify":
        result = audit.verify(store)
        if result.ok:
            print(f"OK: {result.checked} audit records, chain intact")
            return 0
        print(f"BROKEN at record {result.broken_seq}: {result.problem}", file=sys.stderr)
        return 2
    start = datetime.fromisoformat(args.start) if args.start else None
    end = datetime.fromisoformat(args.end) if args.end else None
    sys.stdout.write(audit.export(store, start, end, args.format))
    return 0
