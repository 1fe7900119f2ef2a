"""`schoolgate devices list|show|revoke|export`: the enrolled devices' inventory.

`devices unknown` is in cli/netwatch.py: it reads what netwatch saw, and loads scapy."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.devices import enrolment, inventory


def cmd_devices(args: argparse.Namespace) -> int:
    """`devices list|show ID|export`: the inventory; a stale device counts as non-compliant."""
    try:
        policy, store = open_policy_and_store(args)
    except PolicyError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    now, days, tz = datetime.now(UTC), policy.devices.stale_days, policy.timezone

    def when(at: datetime | None) -> str:
        return f"{at.astimezone(tz):%Y-%m-%d %H:%M}" if at else "never"

    if args.devices_command == "revoke":
        try:
            gone = enrolment.revoke(store, args.id, args.as_user, args.reason or "", now)
        except KeyError:
            print(f"schoolgate: no device {args.id}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"schoolgate: {exc}", file=sys.stderr)
            return 1
        print(
            f"{gone.device_id} ({gone.hostname}) revoked: its token is refused from now on, "
            "and its off-site tunnel, if it had one, stops within a second"
        )
        return 0
    if args.devices_command == "show":
        d = inventory.get_device(store, args.id, now, days)
        if d is None:
            print(f"schoolgate: no device {args.id}", file=sys.stderr)
            return 1
        print(f"{d.device_id}  {d.hostname}")
        print(f"  os: {d.os_name or '?'} {d.os_version or ''}  serial: {d.serial or '-'}")
        print(f"  agent: {d.agent_version or '?'}  user: {d.last_user or '-'}")
        print(f"  ips: {' '.join(d.last_ips) or '-'}  macs: {' '.join(d.last_macs) or '-'}")
        print(f"  last report from: {d.report_address or '-'}", end="")
        ignored = f"  also listed, not believed: {' '.join(d.ignored_ips)}"
        print(ignored if d.ignored_ips else "")
        print(f"  enrolled: {when(d.enrolled_at)}  last report: {when(d.last_report_at)}")
        stale = f" (no report for over {days} days)" if d.stale else ""
        print(f"  compliant: {'yes' if d.compliant else 'no'}{stale}", end="")
        print(" (from MDM: no agent, as the school's MDM export said)" if d.from_mdm else "")
        print(f"  allocated to: {d.allocated_to or '-'}  asset tag: {d.asset_tag or '-'}", end="")
        print(f"  location: {d.location or '-'}")
        if d.revoked:
            print(f"  revoked: {when(d.revoked_at)} by {d.revoked_by}")
        for r in d.results:
            print(f"  - {r.get('id')}: {r.get('status')}: {r.get('reason')}")
            for key, value in (r.get("evidence") or {}).items():
                print(f"      {key}: {json.dumps(value, ensure_ascii=False)[:200]}")
        return 0
    found = inventory.list_devices(store, now, days)
    if args.devices_command == "export":
        sys.stdout.write(inventory.to_csv(found))
        return 0
    for d in found:
        state = "compliant" if d.compliant else "stale" if d.stale else "NON-COMPLIANT"
        state = "revoked" if d.revoked else state
        state = f"{state} (MDM)" if d.from_mdm else state
        allocated = " ".join(x for x in (d.asset_tag, d.allocated_to) if x) or "-"
        print(
            f"{d.device_id:<20} {d.hostname[:30]:<30} {state:<19} "
            f"{d.last_user or '-':<20} {when(d.last_report_at)}  {allocated[:40]}"
        )
    print(f"{len(found)} devices, {sum(not d.compliant for d in found)} not compliant")
    return 0
