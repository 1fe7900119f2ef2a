"""`schoolgate unblock request|approve|reject|confirm|revoke|extend|expire|show|list`:
temporary educational unblocks, through the same workflow as the web app."""

from __future__ import annotations

import argparse
import sys

from proxy_addons.cli.common import open_policy_and_store, school_time
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.typed_time import TimeTypedError
from proxy_addons.core.unblocks import AudienceKind, Scope, Status, Unblock
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow, WorkflowError


def _workflow(args: argparse.Namespace) -> UnblockWorkflow:
    policy, store = open_policy_and_store(args)
    return UnblockWorkflow(store, lambda: policy, send_in_background=False)


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
                until=school_time(args.until, policy, "--until"),
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
            until = school_time(args.until, policy, "--until")
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
    except (WorkflowError, PolicyError, TimeTypedError) as exc:
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
