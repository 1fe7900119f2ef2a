"""`schoolgate unblock ...`, `audit ...`, `account ...`, `log ...` and `devices ...`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy_addons.cli.args import add_store_arguments
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind, Scope, Status, Unblock
from proxy_addons.store import Store, store_url
from proxy_addons.workflow import audit
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow, WorkflowError


def _open(args: argparse.Namespace) -> tuple[Policy, Store]:
    policy = load_policy(Path(args.policy))
    return policy, Store.open(store_url(Path(args.var), args.dsn))


def _workflow(args: argparse.Namespace) -> UnblockWorkflow:
    policy, store = _open(args)
    return UnblockWorkflow(store, lambda: policy, send_in_background=False)


def _when(text: str | None, policy: Policy) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=policy.timezone)


def _show(u: Unblock, policy: Policy) -> str:
    tz = policy.timezone
    return (
        f"{u.id}  {u.status.value:<11} {u.scope.value:<6} {u.target}\n"
        f"    for {u.audience_kind.value} {', '.join(u.audience)}; "
        f"{u.starts_at.astimezone(tz):%Y-%m-%d %H:%M} to {u.ends_at.astimezone(tz):%Y-%m-%d %H:%M}"
        f"; asked by {u.requested_by}: {u.reason}"
    )


def cmd_unblock(args: argparse.Namespace) -> int:
    try:
        flow = _workflow(args)
        policy = flow.policy()
        actor = Actor(getattr(args, "as_user", None) or "", "cli")
        action = args.unblock_command
        if action == "request":
            kind, people = _audience(args)
            result = flow.request(
                actor,
                target=args.target,
                scope=Scope(args.scope) if args.scope else None,
                audience_kind=kind,
                audience=people,
                reason=args.reason or "",
                until=_when(args.until, policy),
                minutes=args.minutes,
            )
        elif action == "approve":
            result = flow.approve(actor, args.id, args.comment or "")
        elif action == "reject":
            result = flow.reject(actor, args.id, args.comment or "")
        elif action == "confirm":
            result = flow.confirm(actor, args.id)
        elif action == "revoke":
            result = flow.revoke(actor, args.id, args.reason or "")
        elif action == "extend":
            until = _when(args.until, policy)
            assert until is not None
            result = flow.extend(actor, args.id, until, args.reason or "")
        elif action == "expire":
            for u in flow.expire_due():
                print(_show(u, policy))
            return 0
        elif action == "show":
            result = flow.get(args.id)
        else:  # list
            statuses = [Status(s) for s in args.status] if args.status else []
            for u in flow.list(statuses):
                print(_show(u, policy))
            return 0
    except (WorkflowError, PolicyError) as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    print(_show(result, policy))
    return 0


def _audience(args: argparse.Namespace) -> tuple[AudienceKind, list[str]]:
    if args.for_user:
        return AudienceKind.USER, [args.for_user]
    if args.for_users:
        return AudienceKind.USERS, args.for_users.split(",")
    if args.for_profile:
        return AudienceKind.PROFILE, [args.for_profile]
    if args.for_device:
        return AudienceKind.DEVICE, [args.for_device]
    raise WorkflowError(
        "Say who it is for: --for-user, --for-users, --for-profile or --for-device."
    )


def cmd_audit(args: argparse.Namespace) -> int:
    _, store = _open(args)
    if args.audit_command == "verify":
        result = audit.verify(store)
        if result.ok:
            print(f"OK: {result.checked} audit records, chain intact")
            return 0
        print(f"BROKEN at record {result.broken_seq}: {result.problem}", file=sys.stderr)
        return 2
    start = datetime.fromisoformat(args.start) if args.start else None
    end = datetime.fromisoformat(args.end) if args.end else None
    sys.stdout.write(audit.export(store, start, end, args.format))
    return 0


def cmd_account(args: argparse.Namespace) -> int:
    from proxy_addons.workflow.accounts import AccountError, add_account

    _, store = _open(args)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if not password:
        print("schoolgate: give the password on standard input (--password-stdin)", file=sys.stderr)
        return 1
    try:
        add_account(store, args.username, password, args.role, email=args.email)
    except AccountError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    print(f"account {args.username.lower()} with roles {', '.join(args.role)}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """`log search` answers a DSL's questions from the store; `log purge` enforces retention."""
    from proxy_addons.record import access_records as ar

    try:
        policy, store = _open(args)
        start = _when(getattr(args, "start", None), policy)
        end = _when(getattr(args, "end", None), policy)
    except (PolicyError, ValueError) as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    if args.log_command == "purge":
        days = policy.monitoring.retention_days
        rows, files = ar.purge(store, Path(args.var) / ar.JSON_FILE, days, datetime.now(UTC))
        print(f"purged {rows} records and {len(files)} files older than {days} days")
        return 0
    if end is not None and len(args.end) == 10:  # a date: up to the end of that day
        end += timedelta(days=1)
    query = ar.Query(
        user=args.user,
        ip=args.ip,
        profile=args.profile,
        category=args.category,
        decision=args.decision,
        host=args.host,
        term=args.term,
        start=start,
        end=end,
        limit=args.limit,
    )
    found = ar.search(store, query)
    if args.format == "csv":
        sys.stdout.write(ar.to_csv(found))
    elif args.format == "json":
        sys.stdout.write(ar.to_json(found))
    else:
        sys.stdout.write(ar.to_table(found, policy.timezone))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from proxy_addons.record.term_report import build_report, find_term, write_report

    policy, store = _open(args)
    try:
        term = find_term(policy, args.term)
    except ValueError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    report = build_report(store, policy, term)
    for path in write_report(report, Path(args.out)):
        print(path)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    """`devices list|show ID|export`: the inventory; a stale device counts as non-compliant."""
    from proxy_addons.devices import registry as dv

    try:
        policy, store = _open(args)
    except PolicyError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    now, days, tz = datetime.now(UTC), policy.devices.stale_days, policy.timezone

    def when(at: datetime | None) -> str:
        return f"{at.astimezone(tz):%Y-%m-%d %H:%M}" if at else "never"

    if args.devices_command == "revoke":
        try:
            gone = dv.revoke(store, args.id, args.as_user, args.reason or "", now)
        except KeyError:
            print(f"schoolgate: no device {args.id}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"schoolgate: {exc}", file=sys.stderr)
            return 1
        print(f"{gone.device_id} ({gone.hostname}) revoked: its token is refused from now on")
        return 0
    if args.devices_command == "show":
        d = dv.get_device(store, args.id, now, days)
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
        print(f"  compliant: {'yes' if d.compliant else 'no'}{stale}")
        if d.revoked:
            print(f"  revoked: {when(d.revoked_at)} by {d.revoked_by}")
        for r in d.results:
            print(f"  - {r.get('id')}: {r.get('status')}: {r.get('reason')}")
            for key, value in (r.get("evidence") or {}).items():
                print(f"      {key}: {json.dumps(value, ensure_ascii=False)[:200]}")
        return 0
    found = dv.list_devices(store, now, days)
    if args.devices_command == "export":
        sys.stdout.write(dv.to_csv(found))
        return 0
    for d in found:
        state = "compliant" if d.compliant else "stale" if d.stale else "NON-COMPLIANT"
        state = "revoked" if d.revoked else state
        print(
            f"{d.device_id:<20} {d.hostname[:30]:<30} {state:<13} "
            f"{d.last_user or '-':<20} {when(d.last_report_at)}"
        )
    print(f"{len(found)} devices, {sum(not d.compliant for d in found)} not compliant")
    return 0


def add_parsers(sub: argparse._SubParsersAction, policy: str, var: str) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser) -> None:
        add_store_arguments(p, policy, var)

    unblock = sub.add_parser("unblock", help="temporary educational unblocks")
    usub = unblock.add_subparsers(dest="unblock_command", required=True)
    req = usub.add_parser("request", help="ask for a page or site to be unblocked")
    req.add_argument("target", help="URL, URL prefix or domain")
    req.add_argument("--as", dest="as_user", required=True, help="the member of staff asking")
    req.add_argument("--scope", choices=[s.value for s in Scope])
    req.add_argument("--for-user")
    req.add_argument("--for-users", help="comma-separated user names, e.g. a class")
    req.add_argument("--for-profile")
    req.add_argument("--for-device", help="a device's IP address")
    req.add_argument("--until", help="end time (school time zone), e.g. 2026-11-25T15:15")
    req.add_argument("--minutes", type=int)
    req.add_argument("--reason", help="the educational reason (required)")
    for name in ("approve", "reject", "confirm", "revoke", "extend", "show"):
        p = usub.add_parser(name)
        p.add_argument("id")
        if name != "show":
            p.add_argument("--as", dest="as_user", required=True)
        if name in ("approve", "reject"):
            p.add_argument("--comment")
        if name in ("revoke", "extend"):
            p.add_argument("--reason")
        if name == "extend":
            p.add_argument("--until", required=True)
        common(p)
    lst = usub.add_parser("list")
    lst.add_argument("--status", action="append", choices=[s.value for s in Status])
    common(lst)
    common(req)
    exp = usub.add_parser("expire", help="record unblocks whose window has ended")
    common(exp)
    unblock.set_defaults(func=cmd_unblock)

    aud = sub.add_parser("audit", help="the tamper-evident audit trail")
    asub = aud.add_subparsers(dest="audit_command", required=True)
    common(asub.add_parser("verify", help="check the hash chain"))
    export = asub.add_parser("export", help="records as CSV or JSON")
    export.add_argument("--from", dest="start")
    export.add_argument("--to", dest="end")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    common(export)
    aud.set_defaults(func=cmd_audit)

    rep = sub.add_parser("report", help="the termly monitoring report for governors")
    rep.add_argument("--term", required=True, help="a term's name from the policy")
    rep.add_argument("--out", default="report", help="folder for report.html and the CSVs")
    common(rep)
    rep.set_defaults(func=cmd_report)

    acc = sub.add_parser("account", help="web app accounts")
    accsub = acc.add_subparsers(dest="account_command", required=True)
    add = accsub.add_parser("add")
    add.add_argument("username")
    add.add_argument(
        "--role", action="append", required=True, choices=["staff", "dsl", "deputy", "it"]
    )
    add.add_argument("--email")
    add.add_argument("--password-stdin", action="store_true")
    common(add)
    acc.set_defaults(func=cmd_account)

    log = sub.add_parser("log", help="the access log: search it, purge old records")
    logsub = log.add_subparsers(dest="log_command", required=True)
    find = logsub.add_parser("search", help="records matching every filter given, oldest first")
    find.add_argument("--user")
    find.add_argument("--ip", help="the device's IP address")
    find.add_argument("--profile")
    find.add_argument("--category")
    find.add_argument("--decision", choices=["allow", "block"])
    find.add_argument("--host", help="a host and its subdomains")
    find.add_argument("--term", help="part of a search term")
    find.add_argument("--from", dest="start", help="school time, e.g. 2026-11-25T09:00")
    find.add_argument("--to", dest="end", help="school time; a date alone includes that day")
    find.add_argument("--limit", type=int, default=100, help="the newest N records (default 100)")
    find.add_argument("--format", choices=["table", "csv", "json"], default="table")
    common(find)
    common(logsub.add_parser("purge", help="delete records older than the retention period"))
    log.set_defaults(func=cmd_log)

    dev = sub.add_parser("devices", help="enrolled devices: inventory and compliance")
    devsub = dev.add_subparsers(dest="devices_command", required=True)
    common(devsub.add_parser("list", help="every device, its compliance and last report"))
    show = devsub.add_parser("show", help="one device's last report")
    show.add_argument("id")
    common(show)
    rev = devsub.add_parser("revoke", help="refuse a device's token until it enrols again")
    rev.add_argument("id")
    rev.add_argument("--as", dest="as_user", required=True, help="who revokes it (audited)")
    rev.add_argument("--reason")
    common(rev)
    dexp = devsub.add_parser("export", help="the inventory as CSV")
    dexp.add_argument("--format", choices=["csv"], default="csv")
    common(dexp)
    dev.set_defaults(func=cmd_devices)

    # --- netwatch: `devices unknown` and `netwatch` (proxy_addons/devices/netwatch.py) ---
    unk = devsub.add_parser("unknown", help="devices seen on the network that never enrolled")
    unk.add_argument("--since-days", type=int, default=7, help="seen within N days (default 7)")
    common(unk)
    unk.set_defaults(func=cmd_devices_unknown)
    watch = sub.add_parser(
        "netwatch", help="record devices seen on the network (ARP, DHCP) and circumvention"
    )
    watch.add_argument("--interface", required=True, help="the school network's interface")
    watch.add_argument(
        "--no-circumvention",
        action="store_true",
        help="only ARP and DHCP: don't look for outside DNS, DoT, VPNs and QUIC",
    )
    common(watch)
    watch.set_defaults(func=cmd_netwatch)


def cmd_devices_unknown(args: argparse.Namespace) -> int:
    """`devices unknown`: MACs seen recently that no enrolled device reported."""
    from proxy_addons.devices.netwatch import unknown_devices

    try:
        policy, store = _open(args)
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
    import logging

    from proxy_addons.devices.circumvention_watch import CircumventionWatch
    from proxy_addons.devices.netwatch import NetWatch
    from proxy_addons.web.app import PolicyFile

    logging.basicConfig(level=logging.INFO)
    try:
        _, store = _open(args)
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


# --- end netwatch ---
