"""`schoolgate report --term NAME`: the governors' termly report, written as files."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from proxy_addons.checks.report import governors_report
from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.record.term_report import find_term, write_report


def cmd_report(args: argparse.Namespace) -> int:
    policy, store = open_policy_and_store(args)
    try:
        term = find_term(policy, args.term)
    except ValueError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    report = governors_report(store, policy, term, datetime.now(policy.timezone).date())
    for path in write_report(report, Path(args.out)):
        print(path)
    return 0
