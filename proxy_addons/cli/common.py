"""What the command modules share: saying a failure, opening the school's policy and store,
and reading a time typed in school time."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store, store_url


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def open_policy_and_store(args: argparse.Namespace) -> tuple[Policy, Store]:
    """The policy of --policy and the store of --var/--dsn (cli.args.add_store_arguments)."""
    policy = load_policy(Path(args.policy))
    return policy, Store.open(store_url(Path(args.var), args.dsn))


def school_time(text: str | None, policy: Policy) -> datetime | None:
    """An ISO time as typed; without a time zone, in the school's."""
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=policy.timezone)
