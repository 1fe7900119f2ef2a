"""What the command modules share: saying a failure, opening the school's policy and store,
and reading a time as people type it, in school time."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.typed_time import read_time
from proxy_addons.store import Store, store_url


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def open_policy_and_store(args: argparse.Namespace) -> tuple[Policy, Store]:
    """The policy of --policy and the store of --var/--dsn (cli.args.add_store_arguments)."""
    policy = load_policy(Path(args.policy))
    return policy, Store.open(store_url(Path(args.var), args.dsn))


def school_time(
    text: str | None, policy: Policy, option: str, *, end: bool = False
) -> datetime | None:
    """A time as people type it (core/typed_time.py), in the school's time zone; None when
    not given. A day alone is its start, or with `end` the start of the next day (so a
    "--to" date includes that day). Raises TimeTypedError naming `option`."""
    if text is None or not text.strip():
        return None
    return read_time(text, policy.timezone, datetime.now(UTC), option, end=end)
