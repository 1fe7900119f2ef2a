"""The gateway as witness for the browser check page (pure; no mitmproxy, no Flask).

A web page cannot read what another site answered (a `no-cors` fetch of a cross-origin URL
resolves to an opaque response whether it was the page or the school's block page), so the
browser alone can't tell blocked from allowed. The gateway can: it decided that browser's
request. Before the page tries a case's URL it *arms a probe* for (the browser's address, the
URL's host); while the probe is armed the gateway notes what it did with that client's
requests for that host (`Sighting`s: a refused CONNECT or TLS hello, its block page, the
answer it passed on, an upstream failure, a certificate the device rejected). The page then
says what the browser itself saw (an answer, a network error or a time-out) and `conclude`
puts the two together into the shared `Observation`.

So a result always reflects that browser's own request over its own network path. The one
conclusion the browser alone supplies is the worrying one: an answer arrived that the
gateway never saw, meaning the device reaches the site without being filtered.

One probe per (address, host) at a time: two checks from one address (devices behind NAT)
trying the same host at once could not be told apart, so the second waits its turn.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.check_suite import Observation
from proxy_addons.core.hosts import HostError, canonical_host

# Set in a Filter decision record (check_marker.py) for a request a browser check's probe is
# watching: monitoring raises no alert for it, as for the gateway's own check runs.
PROBE_MARK = "check_probe"
ARM_SECONDS = 30.0  # how long a probe listens; the page's own time-out is shorter
MAX_PROBES = 2000  # all armed probes at once, across all browsers (bounded memory)


class BrowserSaw(enum.StrEnum):
    """What the check page's fetch of a test URL came to, in the browser."""

    RESPONSE = "response"  # some HTTP answer arrived (opaque: its content can't be read)
    ERROR = "error"  # a network error: refused, reset, TLS failure, DNS failure
    TIMEOUT = "timeout"  # nothing within the page's time-out


class Stage(enum.StrEnum):
    REFUSED = "refused"  # a CONNECT or TLS hello refused (blocked, or can't be decrypted)
    PASSED = "passed"  # a TLS connection passed through on its host name alone
    RESPONSE = "response"  # an HTTP answer the gateway sent (block page or passed on)
    UPSTREAM_ERROR = "upstream_error"  # the gateway could not get the page
    TLS_REJECTED = "tls_rejected"  # the device rejected the school's certificate


@dataclass(frozen=True)
class Sighting:
    """One thing the gateway did with a probed client's traffic for the probed host."""

    stage: Stage
    observation: Observation | None = None  # for RESPONSE and REFUSED
    note: str = ""


class ProbeBusy(Exception):
    """Another probe from the same address for the same host is still armed."""


class ProbeError(ValueError):
    """A URL that can't be probed (no host a browser would accept)."""


@dataclass
class Probe:
    key: str  # the run's token and the case id
    ip: str
    url: str
    hosts: set[str]  # the URL's host, and any a redirect sent the browser on to
    expires: float
    sightings: list[Sighting] = field(default_factory=list)


def host_of(url: str) -> str:
    """The canonical host of a URL (as the Filter's decisions spell it)."""
    try:
        raw = urlsplit(url).hostname or ""
        return canonical_host(raw).name
    except (ValueError, HostError) as exc:
        raise ProbeError(f"'{url}' has no usable host") from exc


class ProbeBook:
    """The armed probes; written by the Flask thread, read by the proxy's event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._probes: dict[str, Probe] = {}
        # Host-only tunnels still open, by connection: requests inside them are invisible.
        self._tunnels: dict[int, tuple[str, str]] = {}

    def arm(self, key: str, ip: str, url: str, seconds: float = ARM_SECONDS) -> Probe:
        host = host_of(url)
        now = self.clock()
        with self._lock:
            self._expire(now)
            self._probes.pop(key, None)  # the page retrying the same case
            for other in self._probes.values():
                if other.ip == ip and host in other.hosts:
                    raise ProbeBusy(f"another check from {ip} is trying {host} just now")
            if len(self._probes) >= MAX_PROBES:
                raise ProbeBusy("too many checks are running at once")
            probe = Probe(key, ip, url, {host}, now + seconds)
            self._probes[key] = probe
            return probe

    @property
    def armed(self) -> bool:
        """Is any probe armed? (Before working out a flow's host for `watching`.)"""
        return bool(self._probes)

    def watching(self, ip: str | None, host: str | None) -> Probe | None:
        """The armed probe for this client and host, if any (cheap: called on every flow)."""
        if not self._probes or not ip or not host:
            return None
        with self._lock:
            now = self.clock()
            for probe in self._probes.values():
                if probe.ip == ip and host in probe.hosts and probe.expires > now:
                    return probe
        return None

    def note(self, probe: Probe, sighting: Sighting, redirect_to: str | None = None) -> None:
        with self._changed:
            probe.sightings.append(sighting)
            if redirect_to:
                probe.hosts.add(redirect_to)
            self._changed.notify_all()

    def tunnel_opened(self, conn: int, ip: str, host: str) -> None:
        with self._lock:
            self._tunnels[conn] = (ip, host)

    def tunnel_closed(self, conn: int) -> None:
        with self._lock:
            self._tunnels.pop(conn, None)

    def tunnel_open(self, ip: str, hosts: set[str]) -> bool:
        with self._lock:
            return any(i == ip and h in hosts for i, h in self._tunnels.values())

    def settle(self, key: str, wait: float = 1.5) -> Probe | None:
        """Disarm a probe and return it, waiting briefly for a first sighting (the browser
        may report a moment before the gateway's hook for the same answer has run)."""
        deadline = self.clock() + wait
        with self._changed:
            probe = self._probes.get(key)
            while probe is not None and not probe.sightings:
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.1))
            return self._probes.pop(key, None)

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._probes.items() if p.expires <= now]:
            del self._probes[key]


def conclude(probe: Probe, saw: BrowserSaw, detail: str, tunnel_open: bool = False) -> Observation:
    """What happened to the browser's request, from the gateway's sightings and the browser's
    own view. The gateway's account wins where it has one; see the module docstring."""
    detail = " ".join(detail.split())[:200]
    said = f"the browser saw {saw.value}" + (f" ({detail})" if detail else "")
    by_stage: dict[Stage, list[Sighting]] = {}
    for s in probe.sightings:
        by_stage.setdefault(s.stage, []).append(s)
    refusals = sorted(  # a blocking refusal first; else "can't be decrypted" (an error)
        by_stage.get(Stage.REFUSED, []), key=lambda s: not (s.observation and s.observation.blocked)
    )
    responses = by_stage.get(Stage.RESPONSE, [])
    blocked_pages = [s for s in responses if s.observation and s.observation.blocked]
    for s in blocked_pages + refusals:
        seen = s.observation
        assert seen is not None
        return _with_evidence(seen, f"gateway: {seen.evidence}; {said}")
    if Stage.TLS_REJECTED in by_stage:
        note = by_stage[Stage.TLS_REJECTED][-1].note
        error = f"TLS: the device did not accept the school's certificate ({note})"
        return Observation(None, False, None, None, error, f"gateway: {error}; {said}")
    if responses:
        seen = responses[-1].observation
        assert seen is not None
        return _with_evidence(seen, f"gateway passed on: {seen.evidence}; {said}")
    if Stage.UPSTREAM_ERROR in by_stage:
        note = by_stage[Stage.UPSTREAM_ERROR][-1].note
        error = f"the gateway could not fetch the page: {note}"
        return Observation(None, False, None, None, error, f"gateway: {error}; {said}")
    passed = by_stage.get(Stage.PASSED)
    if passed or tunnel_open:
        how = passed[-1].note if passed else "on a connection already passed through"
        if saw is BrowserSaw.RESPONSE:
            text = f"gateway: allowed, {how} (not decrypted: status not visible); {said}"
            return Observation(None, False, None, None, None, text)
        error = f"allowed by the gateway ({how}) but no answer reached the browser"
        return Observation(None, False, None, None, error, f"gateway: {error}; {said}")
    if saw is BrowserSaw.RESPONSE:
        text = (
            "the browser got an answer that never passed the gateway: "
            "this device reaches the site unfiltered"
        )
        return Observation(None, False, None, None, None, f"{text}; {said}")
    error = f"no request for {probe.url} reached the gateway"
    return Observation(None, False, None, None, error, f"{error}; {said}")


def _with_evidence(seen: Observation, evidence: str) -> Observation:
    return Observation(
        seen.status, seen.blocked, seen.block_reference, seen.safe_search, seen.error, evidence
    )


__all__ = [
    "ARM_SECONDS",
    "PROBE_MARK",
    "BrowserSaw",
    "Probe",
    "ProbeBook",
    "ProbeBusy",
    "ProbeError",
    "Sighting",
    "Stage",
    "conclude",
    "host_of",
]
