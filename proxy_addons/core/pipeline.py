"""Decisions taken after the Filter's (safe search, circumvention), in the Filter's shape.

The add-ons that run after the Filter replace its record in `flow.metadata["schoolgate"]`
or `Filter.connection_decisions` with one built here, so the access log, alerts and
metrics that follow read one kind of record whoever decided.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from proxy_addons.core import circumvention as cv
from proxy_addons.core import safe_search as ss
from proxy_addons.core.decide import Decision, Reason
from proxy_addons.core.policy.model import Action, Profile, SafeSearch
from proxy_addons.pages import blockpage

SAFE_SEARCH_CATEGORY = "safe_search"  # the category safe-search blocks are recorded under
UNSAFE_LABEL = "Search engine without safe search"
UNSTEERABLE_LABEL = "Search engine that can only be kept safe when decrypted"

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


def circumvention_applies(
    record: Mapping[str, Any], found: cv.Finding, allowed: Collection[str]
) -> bool:
    """Does `found` block what `record` decided? The Filter let it by (or blocked it only
    generically), and the profile, which may use the kinds in `allowed`, may not use it."""
    return may_override(record) and found.kind not in allowed


def circumvention_decision(record: Mapping[str, Any], found: cv.Finding) -> Decision:
    """A block of what `record` decided, for the way round the filter `found`."""
    return block_decision(
        record,
        Reason.CIRCUMVENTION,
        category=cv.CATEGORY,
        label=found.label,
        entry=found.entry,
        source=found.source,
    )


def safe_search_block(
    record: Mapping[str, Any], host: str, mode: SafeSearch, *, host_only: bool
) -> tuple[Decision, str, str] | None:
    """(block, engine, "refused" or "blocked") for a search engine that can't be kept safe:
    one with no safe mode, or (decided on the host name only) one that can't be steered."""
    if mode is SafeSearch.OFF or record.get("action") != "allow":
        return None
    engine = ss.engine_for_host(host)
    if host_only and engine is not None and ss.refuse_host_only(host, mode):
        label, entry, name, action = UNSTEERABLE_LABEL, host, engine.value, "refused"
    elif engine is None and (unsafe := ss.unsafe_engine(host)):
        if allowed_by_own_rule(record):
            return None
        label, entry, name, action = UNSAFE_LABEL, unsafe, "other", "blocked"
    else:
        return None
    decision = block_decision(
        record,
        Reason.SAFE_SEARCH,
        category=SAFE_SEARCH_CATEGORY,
        label=label,
        entry=entry,
        source="built-in: safe search",
    )
    return decision, name, action


def after_filter(
    decision: Decision, profile: Profile, path: str | None
) -> tuple[Decision, str | None]:
    """What the add-ons after the Filter make of its decision (circumvention, then safe
    search), for `schoolgate policy explain`: the final decision, and what safe search does
    to an allowed request (None: nothing). `path` is None for a host-name-only decision.
    Request headers are not known here, so DoH by media type is not seen."""
    record = decision.record()
    host = decision.host
    found = cv.host_finding(host) or (cv.request_finding(path, "", "") if path else None)
    if found is not None and circumvention_applies(record, found, profile.allow_circumvention):
        return circumvention_decision(record, found), None
    mode = profile.safe_search
    engine_block = safe_search_block(record, host, mode, host_only=path is None)
    if engine_block is not None:
        return engine_block[0], f"safe_search={mode.value}"
    if decision.blocked or mode is SafeSearch.OFF:
        return decision, None
    if path is None:
        target = ss.steer_target(host, mode)
        return decision, f"safe search {mode.value}: connected to {target}" if target else None
    change = ss.rewrite(host, path.partition("?")[2], mode)
    if change is None:
        return decision, None
    if change.header is not None:
        what = f"header {change.header[0]}: {change.header[1]} added"
    else:
        what = f"query becomes ?{change.query}"
    return decision, f"safe search {mode.value} ({change.engine.value}): {what}"
