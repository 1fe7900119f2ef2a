"""`schoolgate store purge`: the retention purge now (the gateway also runs it daily)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.record import access_files
from proxy_addons.workflow import retention


def cmd_store_purge(args: argparse.Namespace) -> int:
    """Delete (or, --dry-run, count) what each table keeps past its retention, and the
    access log's JSON files older than its; says how many rows went from which table."""
    policy, store = open_policy_and_store(args)
    now = datetime.now(UTC)
    try:
        report = retention.purge(store, policy, now, dry_run=args.dry_run)
    finally:
        store.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    width = max(len(name) for name in report.removed) if report.removed else 0
    for table, count in report.removed.items():
        print(f"{table:<{width}}  {verb} {count} rows")
    for table in report.failed:
        print(f"{table:<{width}}  FAILED (see the log above); the other tables were purged")
    days = policy.monitoring.retention_days
    if not args.dry_run:
        path = Path(args.var) / access_files.JSON_FILE
        files = access_files.purge_files(path, now - timedelta(days=days))
        print(f"access log files older than {days} days: {len(files)} deleted")
    print("the audit trail is never purged (its records are hash-chained)")
    return 1 if report.failed else 0
