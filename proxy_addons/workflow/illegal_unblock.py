"""A member of staff asked to unblock an address on the illegal tier: refused (nothing can
unblock it), recorded in the audit trail by its hash and a reference only, never the
address, and the DSL told (a safeguarding alert: a person tried to reach illegal content,
or was asked to by someone). The alert names who asked and the reference, not the address.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.illegal_hashes import illegal_reference
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import Scope
from proxy_addons.store import Store
from proxy_addons.workflow import audit

ILLEGAL_UNBLOCK_ASKED = "illegal_unblock_asked"


def refuse_illegal_unblock(
    store: Store,
    outbox: AlertOutbox,
    policy: Policy,
    *,
    actor: str,
    address: str | None,
    scope: Scope,
    target: str,
    now: datetime,
) -> str:
    """Record the refusal and tell the DSL; returns the reference both carry."""
    reference = "IU-" + secrets.token_hex(4).upper()
    with store.begin() as conn:
        audit.append(
            conn,
            actor=actor,
            action="unblock.refused",
            subject="illegal tier",
            detail={
                "target": illegal_reference(target),
                "scope": scope.value,
                "reference": reference,
            },
            address=address,
            at=now,
        )
    event = Event(
        kind=ILLEGAL_UNBLOCK_ASKED,
        severity=5,
        audience=Audience.SAFEGUARDING,
        summary="A member of staff asked to unblock an address on the illegal-content list",
        fields={
            "user": actor,
            "site": "illegal-tier list entry",
            "reference": reference,
            "time": local_time(policy.timezone, now),
        },
        fold_key=f"{ILLEGAL_UNBLOCK_ASKED}|{actor}",
        at=now,
        timezone=policy.timezone.key,
    )
    raise_alert(outbox, policy, event)
    return reference
