"""`schoolgate unblock ...`, `schoolgate audit ...` and `schoolgate account ...`."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from proxy_addons import audit
from proxy_addons.channels import notifier_from_policy
from proxy_addons.policy import Policy
from proxy_addons.policy_loader import PolicyError, load_policy
from proxy_addons.store import Store, store_url
from proxy_addons.unblock_workflow import Actor, UnblockWorkflow, WorkflowError
from proxy_addons.unblocks import AudienceKind, Scope, Status, Unblock


def _open(args: argparse.Namespace) -> tuple[Policy, Store]:
    policy = load_policy(Path(args.policy))
    return policy, Store.open(store_url(Path(args.var), args.dsn))


def _workflow(args: argparse.Namespace) -> UnblockWorkflow:
    policy, store = _open(args)
    return UnblockWorkflow(
        store, lambda: policy, notifier_from_policy(policy), send_in_background=False
    )


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
    from proxy_addons.accounts import AccountError, add_account

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


def add_parsers(sub: argparse._SubParsersAction, policy: str, var: str) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--policy", default=policy)
        p.add_argument("--var", default=var)
        p.add_argument("--dsn", default=None, help="PostgreSQL DSN (default: SQLite under --var)")

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
