"""`schoolgate devices import-allocation|import-mdm FILE.csv --as NAME`: the asset log and
the devices only the school's MDM knows (docs/inventory.md). A file is applied whole or not
at all: each bad line is printed and nothing changes (exit 1)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.devices import asset_log, mdm_import


def cmd_devices_import(args: argparse.Namespace) -> int:
    try:
        policy, store = open_policy_and_store(args)
        text = Path(args.file).read_text(encoding="utf-8-sig")  # Excel's CSV starts with a BOM
    except PolicyError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        print(f"schoolgate: can't read {args.file}: {exc}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    try:
        if args.devices_command == "import-allocation":
            done = asset_log.import_allocation(store, text, args.as_user, now)
            print(f"{done.rows} devices in the file, {done.changed} changed (audited)")
            return 0
        got = mdm_import.import_mdm(store, text, args.as_user, now, policy.timezone)
    except asset_log.ImportRefused as exc:
        for problem in exc.problems:
            print(f"schoolgate: {args.file}: {problem}", file=sys.stderr)
        print(f"schoolgate: nothing was imported from {args.file}", file=sys.stderr)
        return 1
    for note in got.skipped:
        print(f"skipped {note}")
    print(f"{got.added} devices added and {got.updated} updated from the MDM export (audited)")
    return 0
