"""`schoolgate log search|purge`: the access log."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.cli.common import open_policy_and_store, school_time
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.record import access_export, access_files, access_store


def cmd_log(args: argparse.Namespace) -> int:
    """`log search` answers a DSL's questions from the store; `log purge` enforces retention."""
    try:
        policy, store = open_policy_and_store(args)
        start = school_time(getattr(args, "start", None), policy, "--from")
        end = school_time(getattr(args, "end", None), policy, "--to", end=True)
    except (PolicyError, ValueError) as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    if args.log_command == "purge":
        days = policy.monitoring.retention_days
        path = Path(args.var) / access_files.JSON_FILE
        rows, files = access_store.purge(
            store, path, days, datetime.now(UTC), timezone=policy.timezone
        )
        print(f"purged {rows} records and {len(files)} files older than {days} days")
        return 0
    query = access_store.Query(
        user=args.user,
        ip=args.ip,
        profile=args.profile,
        category=args.category,
        decision=args.decision,
        host=args.host,
        term=args.term,
        reference=args.reference,
        start=start,
        end=end,
        limit=args.limit,
    )
    found = access_store.search(store, query)
    if args.format == "csv":
        sys.stdout.write(access_export.to_csv(found))
    elif args.format == "json":
        sys.stdout.write(access_export.to_json(found))
    else:
        sys.stdout.write(access_export.to_table(found, policy.timezone))
    return 0
