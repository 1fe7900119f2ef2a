"""`schoolgate lists update`: fetch the illegal tier's feeds that are due (`illegal.feeds`) and
the configured list archives, check them, swap them in."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops.illegal_feeds.fetch import fetch_due_feeds
from proxy_addons.ops.list_update.config import CONFIG_NAME, UpdateError, load_config
from proxy_addons.ops.list_update.update import update_lists


def cmd_lists_update(args: argparse.Namespace) -> int:
    feeds_ok = update_feeds(Path(args.policy), force=args.force)
    if args.feeds_only:
        return 0 if feeds_ok else 1
    archives = update_archives(args)
    return archives if feeds_ok else 1


def update_feeds(policy_path: Path, *, force: bool) -> bool:
    """The illegal tier's feeds: counts and reasons only, never an entry."""
    try:
        feeds = load_policy(policy_path).illegal.feeds
    except PolicyError as exc:
        print(f"illegal-tier feeds: the policy does not load: {exc}", file=sys.stderr)
        return False
    ok = True
    for result in fetch_due_feeds(feeds, force=force):
        if result.ok:
            print(f"illegal-tier feed {result.name}: {result.message}")
        else:
            ok = False
            print(
                f"illegal-tier feed {result.name} FAILED, the last good list is kept: "
                f"{result.message}",
                file=sys.stderr,
            )
    return ok


def update_archives(args: argparse.Namespace) -> int:
    policy = Path(args.policy)
    config_path = Path(args.config) if args.config else policy.parent / CONFIG_NAME
    if not config_path.exists():
        print(f"no list updates configured ({config_path} does not exist); nothing to do")
        return 0
    try:
        config = load_config(config_path)
    except UpdateError as exc:
        print(f"lists update: {exc}", file=sys.stderr)
        return 1
    if not config.archives:
        print(f"no archives in {config_path}; nothing to do")
        return 0
    result = update_lists(policy, Path(args.var), config, force=args.force)
    for archive in result.archives:
        print(f"{archive['url']}: {archive['bytes']} bytes, sha256 {archive['sha256']}")
        for item in archive["lists"]:  # type: ignore[attr-defined]
            print(f"  {item['list']:<30} {item['before']} -> {item['after']} entries")
    if not result.ok:
        print(f"lists update FAILED, the lists in use are kept: {result.message}", file=sys.stderr)
        return 1
    print(f"lists update: {result.message}")
    return 0
