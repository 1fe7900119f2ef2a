"""`schoolgate netwatch --interface IFACE` (record devices seen on the network, and
circumvention) and `schoolgate devices unknown` (what it saw that never enrolled); see
devices/netwatch.py."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.devices.circumvention_watch import CircumventionWatch
from proxy_addons.devices.netwatch import NetWatch, unknown_devices
from proxy_addons.web.serving import PolicyFile


def cmd_devices_unknown(args: argparse.Namespace) -> int:
    """`devices unknown`: MACs seen recently that no enrolled device reported."""
    try:
        policy, store = open_policy_and_store(args)
    except PolicyError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    found = unknown_devices(store, datetime.now(UTC), args.since_days)
    for d in found:
        print(
            f"{d.mac}  {d.ip or '-':<15} {(d.hostname or '-')[:30]:<30} "
            f"{d.last_seen.astimezone(policy.timezone):%Y-%m-%d %H:%M}  {d.vendor_hint or ''}"
        )
    print(f"{len(found)} unknown devices seen in the last {args.since_days} days")
    return 0


def cmd_netwatch(args: argparse.Namespace) -> int:
    """`netwatch --interface IFACE`: sniff ARP and DHCP until interrupted."""
    logging.basicConfig(level=logging.INFO)
    try:
        _, store = open_policy_and_store(args)
        policy = PolicyFile(Path(args.policy))  # re-read on edits (school_resolvers)
    except PolicyError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    circumvention = None if args.no_circumvention else CircumventionWatch(store, policy)
    watch = NetWatch(store, args.interface, circumvention)
    watch.start()
    try:
        watch.join()
    except KeyboardInterrupt:
        pass
    finally:
        watch.stop()
        store.dispose()
    return 0
