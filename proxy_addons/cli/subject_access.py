"""`schoolgate people export`: everything the gateway holds about one person (UK GDPR right
of access), as JSON or a ZIP of JSON and CSVs; audited with who asked and why."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.cli.common import fail, open_policy_and_store
from proxy_addons.workflow import subject_access
from proxy_addons.workflow.subject_access import ExportRefused, Subject


def cmd_people_export(args: argparse.Namespace) -> int:
    if args.format == "zip" and not args.out:
        return fail("schoolgate: a ZIP needs --out FILE")
    who = Subject(args.user, tuple(args.device or ()), tuple(args.ip or ()))
    _, store = open_policy_and_store(args)
    now = datetime.now(UTC)
    try:
        document = subject_access.export(store, who, by=args.as_user, reason=args.reason, now=now)
    except ExportRefused as exc:
        return fail(f"schoolgate: {exc}")
    finally:
        store.dispose()
    if args.format == "zip":
        Path(args.out).write_bytes(subject_access.to_zip(document))
    elif args.out:
        Path(args.out).write_text(subject_access.to_json(document), encoding="utf-8")
    else:
        sys.stdout.write(subject_access.to_json(document))
    if args.out:
        rows = sum(document["rows"].values())
        print(
            f"{rows} rows about {who.user} written to {args.out} "
            f"(audit record {document['audit_seq']})",
            file=sys.stderr,
        )
    return 0
