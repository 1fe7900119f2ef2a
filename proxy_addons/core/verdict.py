"""The verdict: what the gateway does with one connection or request, decided once.

`core.pipeline.settle` makes it from `decide()`'s decision and what the steps after it
changed (circumvention, safe search). The gateway's add-ons act on it (block page,
refusal, rewrite, steering) and the recorder hands it to its sinks (access log, alerts,
metrics, check witness); nobody decides again. Frozen: a later change is a new verdict
(`dataclasses.replace`), kept in one place per flow or connection.

One verdict comes later than the request's: the content filter's, on a decrypted page the
request's verdict allowed, reached while its body streams (stage "response"). It is the
request's verdict with a `ContentFinding`, and the recorder hands it on as soon as it is
reached (gateway/addons/recorder.py `record_late`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from proxy_addons.core.decide import Decision
from proxy_addons.core.safe_search import Rewrite

# Where a verdict was reached: a CONNECT, a TLS ClientHello, raw TCP bytes (transparent
# mode), a plain or decrypted request, a tunnel's first bytes, or a page's content.
STAGES = ("connect", "tls", "tcp", "request", "tunnel", "response")

# What the content filter found (ContentFinding.outcome).
CONTENT_BLOCKED = "blocked"  # scored over its threshold: blocked, and a safeguarding alert
CONTENT_UNREADABLE = "unreadable"  # could not be read: blocked unread (fail closed)
CONTENT_UNSCANNED = "unscanned"  # over the cap: the rest passed unscanned


@dataclass(frozen=True)
class ContentFinding:
    """What the content filter found on a page the request's verdict allowed."""

    outcome: str  # CONTENT_BLOCKED, CONTENT_UNREADABLE or CONTENT_UNSCANNED
    rule: str  # why, in words (the access log's `rule`)
    category: str | None = None  # the category scored over its threshold, or "unreadable"
    category_label: str | None = None
    list_source: str | None = None  # the weighted lists (blocked by score only)
    entry: str | None = None  # the phrases that weighed most, joined (blocked by score only)
    score: int | None = None  # the category's score (blocked by score only)
    threshold: int | None = None
    phrases: tuple[str, ...] = ()  # the phrases that weighed most (the alert's)

    @property
    def blocked(self) -> bool:
        return self.outcome != CONTENT_UNSCANNED

    def apply(self, record: dict[str, Any]) -> None:
        """Change a request's record into the page's: what the content decision changes."""
        if not self.blocked:
            record.update(reason="unscanned", rule=self.rule)
            return
        record.update(
            action="block",
            reason="content",
            category=self.category,
            category_label=self.category_label,
            rule=self.rule,
        )
        if self.outcome == CONTENT_BLOCKED:
            record.update(list_source=self.list_source, entry=self.entry)
        record["content_score"] = self.score


@dataclass(frozen=True)
class Verdict:
    # What took effect: decide()'s, or the block a later step made of it (stage "response":
    # the request's, and `content` what the page's content changed).
    decision: Decision
    stage: str  # one of STAGES
    reference: str | None = None  # a block's reference (block page, access log, alerts)
    circumvention: str | None = None  # the kind of way round the filter that blocked it
    enforced: str | None = None  # what safe search did (the access log's `enforced`)
    rewrite: Rewrite | None = None  # safe search: the change to make to the request
    steer_to: str | None = None  # safe search: connect a host-only engine here instead
    decide_seconds: float | None = None  # how long deciding took (metrics)
    safe_search: tuple[str, str] | None = None  # (engine, what was done), for the metric
    check_probe: bool = False  # a browser check's test request (checks/probes.py)
    check_window: int | None = None  # an agent's announced check run (checks/announced.py)
    content: ContentFinding | None = None  # stage "response": what the page's content did

    @property
    def blocked(self) -> bool:
        if self.content is not None:
            return self.content.blocked
        return self.decision.blocked

    @property
    def host(self) -> str:
        return self.decision.host

    @cached_property
    def record(self) -> dict[str, Any]:
        """Plain data for the sinks (access log, alerts, metrics): the decision's record
        with where and how it was reached. Read it, never change it."""
        out = self.decision.record()
        out["stage"] = self.stage
        out["reference"] = self.reference
        if self.decide_seconds is not None:
            out["decide_seconds"] = self.decide_seconds
        if self.circumvention is not None:
            out["circumvention"] = self.circumvention
        if self.enforced is not None:
            out["enforced"] = self.enforced
        if self.check_probe:
            out["check_probe"] = True
        if self.check_window is not None:
            out["check_window"] = self.check_window
        if self.content is not None:
            self.content.apply(out)
        return out
