"""The one decision pipeline: decide -> circumvention -> safe search, to one `Verdict`.

The gateway calls `settle` at each stage it decides (CONNECT, TLS ClientHello, raw TCP,
request) with `decide()`'s decision, and acts on the verdict; `schoolgate policy explain`
calls it too, so what it prints is what the gateway does. After `decide()`:

- circumvention: a way round the filter (`circumvention.py`) blocks what the decision let
  by, or blocked only generically (a bare IP, the default), unless the profile may use it;
- safe search: a search engine that can't be kept safe is blocked; an allowed request to
  one is rewritten, an allowed connection passed through on its host name is steered to
  the engine's enforced endpoint (`safe_search.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from proxy_addons.core import circumvention as cv
from proxy_addons.core import safe_search as ss
from proxy_addons.core.decide import Decision, Reason
from proxy_addons.core.policy.model import Action, Profile, SafeSearch
from proxy_addons.core.verdict import Verdict

SAFE_SEARCH_CATEGORY = "safe_search"  # the category safe-search blocks are recorded under
UNSAFE_LABEL = "Search engine without safe search"
UNSTEERABLE_LABEL = "Search engine that can only be kept safe when decrypted"
TUNNEL_SOURCE = "built-in: first bytes of the connection"

# Blocks that say nothing more specific than a later step would.
_GENERIC_BLOCKS = frozenset({Reason.BARE_IP, Reason.DEFAULT})


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request carries beyond its names, for the steps after decide()."""

    path: str | None = None  # path and query; None: only the host name is known
    content_type: str = ""
    accept: str = ""
    host_only: bool = False  # the connection passes through on its host name alone


def settle(
    decision: Decision,
    profiles: Mapping[str, Profile],
    stage: str,
    asked: Asked,
    new_reference: Callable[[], str],
    decide_seconds: float | None = None,
) -> Verdict:
    """The verdict on `decision` (decided at `stage`) once circumvention and safe search
    have had their say, for the profile it names (none known: no circumvention allowed,
    strict safe search). A block gets a reference from `new_reference`."""
    profile = profiles.get(decision.profile)
    allowed = profile.allow_circumvention if profile is not None else frozenset()
    mode = profile.safe_search if profile is not None else SafeSearch.STRICT
    found = cv.host_finding(decision.host)
    if found is None and asked.path is not None:
        found = cv.request_finding(asked.path, asked.content_type, asked.accept)
    if found is not None and circumvention_applies(decision, found, allowed):
        blocked = circumvention_block(decision, found)
        return _verdict(blocked, stage, new_reference, decide_seconds, circumvention=found.kind)
    if mode is SafeSearch.OFF or decision.blocked:
        return _verdict(decision, stage, new_reference, decide_seconds)
    if asked.path is None and not asked.host_only:
        return _verdict(decision, stage, new_reference, decide_seconds)
    host = decision.host
    engine_block = safe_search_block(decision, host, mode, host_only=asked.path is None)
    if engine_block is not None:
        blocked, engine, action = engine_block
        return _verdict(
            blocked,
            stage,
            new_reference,
            decide_seconds,
            enforced=f"safe_search={mode.value}",
            safe_search=(engine, action),
        )
    if asked.path is None:
        target = ss.steer_target(host, mode)
        engine_name = ss.engine_for_host(host)
        if target is None or engine_name is None:
            return _verdict(decision, stage, new_reference, decide_seconds)
        return Verdict(
            decision,
            stage,
            enforced=f"safe_search={mode.value} via {target}",
            steer_to=target,
            decide_seconds=decide_seconds,
            safe_search=(engine_name.value, "steered"),
        )
    change = ss.rewrite(host, asked.path.partition("?")[2], mode)
    if change is None:
        return _verdict(decision, stage, new_reference, decide_seconds)
    return Verdict(
        decision,
        stage,
        enforced=change.note(mode),
        rewrite=change,
        decide_seconds=decide_seconds,
        safe_search=(change.engine.value, "rewritten"),
    )


def tunnel_verdict(
    decision: Decision, kind: str, allowed: Collection[str], new_reference: Callable[[], str]
) -> Verdict | None:
    """A connection whose first bytes are a tunnel (`kind`, see circumvention.sniff): the
    block of what `decision` decided for it, unless the profile may use tunnels."""
    if cv.TUNNEL in allowed:
        return None
    finding = cv.Finding(cv.TUNNEL, kind, TUNNEL_SOURCE)
    blocked = circumvention_block(decision, finding)
    return _verdict(blocked, "tunnel", new_reference, None, circumvention=cv.TUNNEL)


def _verdict(
    decision: Decision,
    stage: str,
    new_reference: Callable[[], str],
    decide_seconds: float | None,
    **changes: Any,
) -> Verdict:
    reference = new_reference() if decision.blocked else None
    return Verdict(decision, stage, reference, decide_seconds=decide_seconds, **changes)


def may_override(decision: Decision) -> bool:
    """Allowed, or blocked for a generic reason a more specific block may replace."""
    return not decision.blocked or decision.reason in _GENERIC_BLOCKS


def allowed_by_own_rule(decision: Decision) -> bool:
    """Allowed by a rule naming this domain or URL, or by an unblock: the school's choice."""
    if decision.blocked:
        return False
    if decision.reason is Reason.UNBLOCK:
        return True
    source = decision.list_source or ""
    return decision.reason is Reason.RULE and source.endswith((" domains", " urls"))


def circumvention_applies(decision: Decision, found: cv.Finding, allowed: Collection[str]) -> bool:
    """Does `found` block what `decision` decided? It let it by (or blocked it only
    generically), and the profile, which may use the kinds in `allowed`, may not use it."""
    return may_override(decision) and found.kind not in allowed


def block_of(
    decision: Decision, reason: Reason, *, category: str, label: str, entry: str, source: str
) -> Decision:
    """A block of what `decision` decided, for `reason`, keeping who and what it was about
    (and nothing of why it was decided: no schedules, unblock or decryption need)."""
    return replace(
        decision,
        action=Action.BLOCK,
        reason=reason,
        rule=f"built in: {label}",
        category=category,
        category_label=label,
        list_source=source,
        entry=entry,
        must_decrypt=False,
        allowed_when=(),
        unblock_id=None,
    )


def circumvention_block(decision: Decision, found: cv.Finding) -> Decision:
    """A block of what `decision` decided, for the way round the filter `found`."""
    return block_of(
        decision,
        Reason.CIRCUMVENTION,
        category=cv.CATEGORY,
        label=found.label,
        entry=found.entry,
        source=found.source,
    )


def safe_search_block(
    decision: Decision, host: str, mode: SafeSearch, *, host_only: bool
) -> tuple[Decision, str, str] | None:
    """(block, engine, "refused" or "blocked") for a search engine that can't be kept safe:
    one with no safe mode, or (decided on the host name only) one that can't be steered."""
    if mode is SafeSearch.OFF or decision.blocked:
        return None
    engine = ss.engine_for_host(host)
    if host_only and engine is not None and ss.refuse_host_only(host, mode):
        label, entry, name, action = UNSTEERABLE_LABEL, host, engine.value, "refused"
    elif engine is None and (unsafe := ss.unsafe_engine(host)):
        if allowed_by_own_rule(decision):
            return None
        label, entry, name, action = UNSAFE_LABEL, unsafe, "other", "blocked"
    else:
        return None
    blocked = block_of(
        decision,
        Reason.SAFE_SEARCH,
        category=SAFE_SEARCH_CATEGORY,
        label=label,
        entry=entry,
        source="built-in: safe search",
    )
    return blocked, name, action
