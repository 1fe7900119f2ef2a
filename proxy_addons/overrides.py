"""Decisions taken after the Filter's (safe search, circumvention), in the Filter's shape.

The add-ons that run after the Filter replace its record in `flow.metadata["schoolgate"]`
or `Filter.connection_decisions` with one built here, so the access log, alerts and
metrics that follow read one kind of record whoever decided.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from proxy_addons import blockpage
from proxy_addons.decision import Decision, Reason
from proxy_addons.policy import Action

# Filter blocks that say nothing more specific than a later check would.
_GENERIC_BLOCKS = frozenset({"bare_ip", "default"})


def may_override(record: Mapping[str, Any] | None) -> bool:
    """Allowed, or blocked for a generic reason a more specific block may replace."""
    if not record:
        return False
    return record.get("action") == "allow" or record.get("reason") in _GENERIC_BLOCKS


def allowed_by_own_rule(record: Mapping[str, Any]) -> bool:
    """Allowed by a rule naming this domain or URL, or by an unblock: the school's choice."""
    if record.get("action") != "allow":
        return False
    if record.get("reason") == "unblock":
        return True
    source = str(record.get("list_source") or "")
    return record.get("reason") == "rule" and source.endswith((" domains", " urls"))


def block_decision(
    record: Mapping[str, Any],
    reason: Reason,
    *,
    category: str,
    label: str,
    entry: str,
    source: str,
) -> Decision:
    """A block of what `record` decided, for `reason`, keeping who and what it was about."""
    return Decision(
        Action.BLOCK,
        reason,
        str(record.get("profile") or "unknown"),
        str(record.get("identified_by") or "none"),
        str(record.get("host") or ""),
        url=record.get("url"),
        user=record.get("user"),
        ip=record.get("ip"),
        rule=f"built in: {label}",
        category=category,
        category_label=label,
        list_source=source,
        entry=entry,
        decrypt=bool(record.get("decrypt", True)),
    )


def record_of(decision: Decision, stage: str, started: float | None = None) -> dict[str, Any]:
    """`decision` as the Filter records it (see filtering._record), with a new reference."""
    record = decision.record()
    record["stage"] = stage
    record["reference"] = blockpage.new_reference(datetime.now(UTC)) if decision.blocked else None
    if started is not None:
        record["decide_seconds"] = time.perf_counter() - started
    return record
