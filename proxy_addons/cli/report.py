"""`schoolgate report --term NAME`: the termly monitoring report for governors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.record.term_report import build_report, find_term, write_report


def cmd_report(args: argparse.Namespace) -> int:
    policy, store = open_policy_and_store(args)
    try:
        term = find_term(policy, args.term)
    except ValueError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    report = build_report(store, policy, term)
    for path in write_report(report, Path(args.out)):
        print(path)
    return 0
