"""The unblock workflow's pure rules and shapes: ids, when a lesson ends, whether a request
touches the illegal tier, and how an unblock is written down (audit detail, messages)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from proxy_addons.core.illegal_hashes import hashed_hit
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind, Scope, Status, Unblock
from proxy_addons.core.url_keys import illegal_key
from proxy_addons.pages.blockpage import REFERENCE_ALPHABET

STAFF_ROLES = {"staff", "dsl", "deputy", "it", "headteacher"}
LIVE = (Status.ACTIVE, Status.AWAITING_IT, Status.PENDING)  # not yet ended


def new_unblock_id() -> str:
    return "UB-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


def row_to_unblock(row: Any) -> Unblock:
    return Unblock(
        id=row.id,
        scope=Scope(row.scope),
        target=row.target,
        audience_kind=AudienceKind(row.audience_kind),
        audience=tuple(row.audience),
        starts_at=aware(row.starts_at),
        ends_at=aware(row.ends_at),
        reason=row.reason,
        requested_by=row.requested_by,
        status=Status(row.status),
    )


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def rest_of_lesson(policy: Policy, now: datetime) -> datetime | None:
    """The end of the lesson happening now (school time), or None outside lessons."""
    local = now.astimezone(policy.timezone)
    clock = local.time().replace(tzinfo=None)
    for lesson in policy.unblocks.lessons:
        if lesson.start <= clock < lesson.end:
            end = datetime.combine(local.date(), lesson.end, policy.timezone)
            return end.astimezone(UTC)
    return None


def illegal_overlap(policy: Policy, scope: Scope, target: str) -> str | None:
    """An illegal-tier entry the requested scope would touch, if any."""
    tier = policy.illegal
    entries = [*tier.exact, *(p for p, _ in tier.prefixes)]
    hashed = hashed_hit(tier.hashed, illegal_key(target))  # a hashed entry covering it
    if hashed is not None:
        return f"sha256:{hashed}"
    if scope is Scope.DOMAIN:
        for entry in entries:
            host = entry.split("/", 1)[0]
            if host == target or host.endswith("." + target):
                return entry
        return None
    base = target.split("?", 1)[0]
    for entry in entries:
        if entry.startswith(base) or base.startswith(entry.split("?", 1)[0]):
            return entry
    return None


def describe(unblock: Unblock) -> dict[str, Any]:
    """An unblock as the audit trail and the messages' data carry it."""
    return {
        "id": unblock.id,
        "scope": unblock.scope.value,
        "target": unblock.target,
        "audience_kind": unblock.audience_kind.value,
        "audience": list(unblock.audience),
        "starts_at": unblock.starts_at.isoformat(),
        "ends_at": unblock.ends_at.isoformat(),
        "reason": unblock.reason,
        "requested_by": unblock.requested_by,
    }


def school_time(policy: Policy, when: datetime) -> str:
    """A time as people at the school read it in a message."""
    return when.astimezone(policy.timezone).strftime("%H:%M on %a %d %b %Y")


def jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
