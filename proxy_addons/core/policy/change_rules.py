"""`changes:`: who may approve a filtering change (workflow/policy_changes.py).

A change is proposed by one person and approved by a second whose role the policy names;
nobody approves their own. Roles are the accounts' roles (dsl, deputy, it, headteacher)
and the people the policy names for them (monitoring.safeguarding is the DSL's list...).
"""

from __future__ import annotations

from dataclasses import dataclass

APPROVER_ROLES = frozenset({"dsl", "deputy", "it", "headteacher"})


@dataclass(frozen=True)
class ChangeRules:
    """`changes.approvers`: the roles whose holders may approve someone else's change."""

    approvers: frozenset[str] = frozenset({"dsl", "it"})


__all__ = ["APPROVER_ROLES", "ChangeRules"]
