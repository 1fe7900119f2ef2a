"""Arguments shared by the `schoolgate` commands that open the policy and the store."""

from __future__ import annotations

import argparse
import os


def add_store_arguments(p: argparse.ArgumentParser, policy: str, var: str) -> None:
    p.add_argument("--policy", default=policy)
    p.add_argument("--var", default=var)
    p.add_argument(
        "--dsn",
        default=os.environ.get("SCHOOLGATE_DSN") or None,
        help="PostgreSQL DSN (default: $SCHOOLGATE_DSN, else SQLite under --var)",
    )
