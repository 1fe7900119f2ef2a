"""What the recorder hands its sinks with a verdict: how it took effect, and what the
request or connection adds to it (when, who, which address, the answer given at once).

The recorder (gateway/addons/recorder.py) settles once which verdict took effect for a
request or connection and hands every verdict the gateway made to each `Sink`, exactly
once, with a `Seen`; the sinks (the access log, the alert intake, the decision metrics,
the check witness) only write down what it says. Pure of mitmproxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from proxy_addons.core.verdict import Verdict


class Took(Enum):
    """How a verdict took effect, or that it did not."""

    REQUEST = "request"  # a plain or decrypted request: each one is decided
    REFUSED = "refused"  # at once: a CONNECT answered, a TLS or TCP connection refused or closed
    PASSED = "passed"  # a connection passed through on its host name, never decrypted
    TLS_FAILED = "tls_failed"  # to be decrypted, but the device refused the school's certificate
    RESPONSE = "response"  # later than the request's: a page's content (the content filter)
    CLOSED = "closed"  # an allowed CONNECT whose tunnel carried neither TLS nor HTTP, at its end
    SUPERSEDED = "superseded"  # no effect: a later verdict decided the same traffic, or none came


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer the gateway gave at once (a refused CONNECT), for the check witness."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Seen:
    """What the request or connection adds to its verdict."""

    took: Took
    at: datetime  # when the request or CONNECT started, or the connection was decided (UTC)
    connection: int  # which client connection (unique while it is open)
    ip: str | None = None
    user: str | None = None  # who signed in to the proxy (the name only, never the password)
    method: str | None = None  # the request's method; CONNECT; None for a connection
    url: str | None = None  # the request's URL, given only when the verdict's record lacks one
    path: str | None = None  # the request's path (alerts look for a search term in it)
    navigation: bool = True  # asked for by the person (a page or frame), not fetched by a page
    answer: Answer | None = None  # the gateway's own answer to a refused CONNECT

    @property
    def took_effect(self) -> bool:
        return self.took is not Took.SUPERSEDED


class Sink(Protocol):
    """Where the recorder hands verdicts: every verdict once, with how it took effect."""

    def record(self, verdict: Verdict, seen: Seen) -> None: ...
