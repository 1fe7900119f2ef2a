"""`schoolgate store upgrade`: migrate the store to this version's schema (Store.open does)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic.runtime.migration import MigrationContext

from proxy_addons.store import Store, StoreError, store_url


def cmd_store_upgrade(args: argparse.Namespace) -> int:
    url = store_url(Path(args.var), args.dsn or None)
    try:
        store = Store.open(url)
    except StoreError as exc:
        print(f"store upgrade failed: {exc}", file=sys.stderr)
        return 1
    try:
        with store.connect() as conn:
            heads = sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        store.dispose()
    print(f"store {store!r} at schema {', '.join(heads)}")
    return 0
