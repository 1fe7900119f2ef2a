"""The policy's `changes:` section, read by `load.load_policy`.

changes:
  approvers: [dsl, it]   # roles that may approve another person's filtering change
"""

from __future__ import annotations

from typing import Any

from proxy_addons.core.policy.change_rules import APPROVER_ROLES, ChangeRules
from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.yaml_reader import Where


def load_changes(ck: Checker, raw: Any, where: Where) -> ChangeRules:
    if raw is None:
        return ChangeRules()
    m = ck.mapping(raw, where, "changes", ["approvers"])
    if m is None or m.get("approvers") is None:
        return ChangeRules()
    roles: list[Any] = ck.listing(m.get("approvers"), m.at("approvers"), "approvers") or []
    wanted = frozenset(str(r).strip().lower() for r in roles)
    unknown = sorted(wanted - APPROVER_ROLES)
    if unknown:
        ck.fail(
            m.at("approvers"),
            f"changes.approvers: {', '.join(unknown)} is not a role that approves changes; "
            f"use some of {', '.join(sorted(APPROVER_ROLES))}",
        )
    if not wanted & APPROVER_ROLES:
        ck.fail(m.at("approvers"), "changes.approvers needs at least one role")
        return ChangeRules()
    return ChangeRules(approvers=wanted & APPROVER_ROLES)
