"""`schoolgate report --term NAME`: the governors' termly report, written as files."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from proxy_addons.checks.report import term_summary
from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.record.term_report import build_report, find_term, write_report
from proxy_addons.workflow import reviews


def cmd_report(args: argparse.Namespace) -> int:
    policy, store = open_policy_and_store(args)
    try:
        term = find_term(policy, args.term)
    except ValueError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    today = datetime.now(policy.timezone).date()
    found = reviews.list_reviews(store)
    report = build_report(
        store,
        policy,
        term,
        today=today,
        reviews=found,
        next_review=reviews.next_due(policy, found, today),
        checks=term_summary(store, policy, term),
    )
    for path in write_report(report, Path(args.out)):
        print(path)
    return 0
