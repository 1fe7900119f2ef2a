"""`schoolgate policy propose|approve|reject|withdraw|history`: filtering changes from the
command line, through the same workflow as the web app's "Filtering changes" page.

`--as` names the person; the command line is the box's own (the IT provider's), and the
record says who was named. The running gateway picks an approved change up within 2 s.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxy_addons.cli.common import fail, open_policy_and_store
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.workflow.policy_changes import Change, ChangeError, PolicyChanges


def _flow(args: argparse.Namespace) -> PolicyChanges:
    policy, store = open_policy_and_store(args)
    return PolicyChanges(store, lambda: load_policy(policy.path))


def _when(change: Change) -> str:
    return f"{change.proposed_at:%Y-%m-%d %H:%M} UTC"


def show(change: Change) -> str:
    """One change, as `history` lists it."""
    who = f"proposed by {change.proposed_by}"
    if change.decided_by:
        who += f", {change.state} by {change.decided_by}"
    lines = [f"{change.id:>4}  {_when(change)}  {change.state:<9} {change.summary}"]
    lines.append(f"      {who}; reason: {change.reason}")
    if change.decision_note:
        lines.append(f"      note: {change.decision_note}")
    if change.error:
        lines.append(f"      {change.error.splitlines()[0]}")
    return "\n".join(lines)


def _request(args: argparse.Namespace) -> dict[str, Any]:
    kind = args.kind.replace("-", "_")
    if kind.startswith("list"):
        return {"kind": kind, "list": args.list or "", "value": args.value or ""}
    if kind.startswith("category"):
        return {
            "kind": kind,
            "profile": args.profile or "",
            "rule": args.rule or "",
            "category": args.category or "",
        }
    return {"kind": kind, "schedule": args.schedule or "", "times": list(args.times)}


def _run(args: argparse.Namespace, step: str) -> int:
    try:
        flow = _flow(args)
        if step == "propose":
            done = flow.propose(args.actor, _request(args), args.reason)
        elif step == "approve":
            done = flow.approve(args.actor, args.id, args.note)
        elif step == "reject":
            done = flow.reject(args.actor, args.id, args.reason)
        else:
            done = flow.withdraw(args.actor, args.id)
    except (ChangeError, PolicyError) as exc:
        return fail(f"schoolgate: {exc}")
    print(show(done))
    if step == "propose":
        print(done.diff, end="")
        print(f"Waiting for a second person: schoolgate policy approve {done.id} --as NAME")
    return 0


def cmd_propose(args: argparse.Namespace) -> int:
    return _run(args, "propose")


def cmd_approve(args: argparse.Namespace) -> int:
    return _run(args, "approve")


def cmd_reject(args: argparse.Namespace) -> int:
    return _run(args, "reject")


def cmd_withdraw(args: argparse.Namespace) -> int:
    return _run(args, "withdraw")


def cmd_history(args: argparse.Namespace) -> int:
    try:
        flow = _flow(args)
        if args.diff is not None:
            change = flow.get(args.diff)
            print(show(change))
            print(change.diff or "(no difference in the files)", end="")
            return 0
        changes = flow.history(state="proposed" if args.pending else None)
    except (ChangeError, PolicyError) as exc:
        return fail(f"schoolgate: {exc}")
    for change in changes:
        print(show(change))
    if not changes:
        print("No filtering changes recorded.")
    return 0
