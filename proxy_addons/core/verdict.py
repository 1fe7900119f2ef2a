"""The verdict: what the gateway does with one connection or request, decided once.

`core.pipeline.settle` makes it from `decide()`'s decision and what the steps after it
changed (circumvention, safe search). The gateway's add-ons act on it (block page,
refusal, rewrite, steering) and the recorder hands it to its sinks (access log, alerts,
metrics, check witness); nobody decides again. Frozen: a later change is a new verdict
(`dataclasses.replace`), kept in one place per flow or connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from proxy_addons.core.decide import Decision
from proxy_addons.core.safe_search import Rewrite

# Where a verdict was reached: a CONNECT, a TLS ClientHello, raw TCP bytes (transparent
# mode), a plain or decrypted request, or a tunnel's first bytes.
STAGES = ("connect", "tls", "tcp", "request", "tunnel")


@dataclass(frozen=True)
class Verdict:
    decision: Decision  # what took effect: decide()'s, or the block a later step made of it
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

    @property
    def blocked(self) -> bool:
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
        return out
