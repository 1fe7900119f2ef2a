"""Access log records: what one filtering decision leaves in the log, built from its verdict.

Pure of mitmproxy, so the writer, the queries and the purge are the same code in
the gateway, in `schoolgate log ...` and in the tests.

What a record holds is what a safeguarding lead needs to answer "who went
where, when, and what happened": time, user, profile, device, method, host,
URL without its query string (a search keeps only its term), the search term,
the decision and why (category, rule, list entry, unblock). Never a password,
a cookie, a header or a page.

The gateway hands records to an `AccessWriter` (access_writer.py), which writes them as
JSON lines (access_files.py) and to the store (access_store.py); access_export.py turns
them into CSV, JSON and a table for `schoolgate log`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from proxy_addons.core.illegal_hashes import illegal_reference
from proxy_addons.core.search_terms import extract, log_url

_LIMITS = {
    "user": 200,
    "profile": 100,
    "ip": 64,
    "device_name": 200,
    "device_id": 64,
    "method": 16,
    "host": 255,
    "url": 4096,
    "reason": 20,
    "category": 100,
    "rule": 1000,
    "list": 1000,
    "entry": 2048,
    "unblock_id": 20,
    "reference": 32,
    "stage": 10,
    "enforced": 100,
}


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One decision, as logged. `url` is None when only the host name was seen."""

    time: datetime  # UTC
    user: str | None
    profile: str
    ip: str | None
    device_name: str | None  # set once the device agent exists
    device_id: str | None
    method: str | None  # CONNECT for a refused tunnel; None for a TLS-stage decision
    host: str
    url: str | None
    search_term: str | None
    decision: str  # allow | block
    reason: str
    category: str | None
    rule: str | None
    list: str | None  # the list (or rule) the entry came from
    entry: str | None
    unblock_id: str | None
    reference: str | None  # the reference on the block page
    stage: str  # connect | tls | request
    enforced: str | None = None  # safe search enforced on an allowed request (how)
    # A termly check's own visit (a canary fetched on purpose, `is_check_visit`): kept, as it
    # happened, but never counted as a pupil's block (daily totals, metrics, reports).
    check_visit: bool = False

    def __post_init__(self) -> None:
        # A client's undecodable bytes reach here as lone surrogates (a Host header of
        # raw 0xFF): written as \udcff, so no file, store or export refuses the record.
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not value.isascii():
                clean = value.encode("utf-8", "backslashreplace").decode("utf-8")
                object.__setattr__(self, name, clean)

    def _values(self) -> dict[str, Any]:
        # Every field is immutable (str, None, datetime): no need for asdict's deep copies,
        # which cost more than the rest of writing a record.
        return {name: getattr(self, name) for name in FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the time in ISO 8601 UTC, every field present."""
        out = self._values()
        out["time"] = self.time.astimezone(UTC).isoformat(timespec="milliseconds")
        return out

    def to_row(self) -> dict[str, Any]:
        out = self._values()
        out["at"] = out.pop("time")
        out["username"] = out.pop("user")
        out["list_source"] = out.pop("list")
        return out

    @classmethod
    def from_row(cls, row: Any) -> AccessRecord:
        m = row._mapping
        names = {f.name: f.name for f in fields(cls)}
        names |= {"time": "at", "user": "username", "list": "list_source"}
        values = {name: m[column] for name, column in names.items()}
        values["check_visit"] = bool(values["check_visit"])
        return cls(**values)


FIELDS = [f.name for f in fields(AccessRecord)]
_TEXT_FIELDS = tuple(f for f in FIELDS if f not in ("time", "check_visit"))

# What marks a verdict's record as a termly check's (core/verdict.py writes both): the
# gateway's own check runs are identified as "check" (checks/identity.py); a browser check's
# probes and an agent's announced runs carry `check_probe` (gateway/addons/check_marker.py).
CHECK_IDENTITY = "check"
CHECK_PROBE_KEY = "check_probe"


def is_check_visit(decision: dict[str, Any]) -> bool:
    """Was this a termly check's visit, not a person's? (A decision or verdict record.)"""
    return decision.get("identified_by") == CHECK_IDENTITY or bool(decision.get(CHECK_PROBE_KEY))


def _clip(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[: _LIMITS[name]]


def build(
    decision: dict[str, Any],
    at: datetime,
    *,
    method: str | None = None,
    user: str | None = None,
    ip: str | None = None,
    url: str | None = None,
) -> AccessRecord:
    """A record from the Filter's `flow.metadata["schoolgate"]` (a `Decision.record()`).

    `user`, `ip` and `url` fill in what a failed decision may lack (a decision
    that could not be made knows only the host). Only the fields listed in
    `AccessRecord` are taken: nothing else in the decision reaches the log.
    """
    host = str(decision.get("host") or "")
    full_url = decision.get("url") or url
    search = None
    entry = decision.get("entry")
    if decision.get("reason") == "illegal":  # never an illegal-tier URL in plain text
        full_url = illegal_reference(str(full_url)) if full_url else None
        entry = illegal_reference(str(entry)) if entry else None
    elif full_url:
        parts = urlsplit(str(full_url))
        if parts.query:
            search = extract(parts.hostname or host, f"{parts.path}?{parts.query}")
        full_url = log_url(str(full_url))
    name = decision.get("user") or user
    return AccessRecord(
        time=at.astimezone(UTC),
        user=_clip(str(name).lower() if name else None, "user"),
        profile=_clip(decision.get("profile"), "profile") or "unknown",
        ip=_clip(decision.get("ip") or ip, "ip"),
        device_name=None,
        device_id=None,
        method=_clip(method, "method"),
        host=_clip(host, "host") or "",
        url=_clip(full_url, "url"),
        search_term=search,
        decision="block" if decision.get("action") == "block" else "allow",
        reason=_clip(decision.get("reason"), "reason") or "",
        category=_clip(decision.get("category"), "category"),
        rule=_clip(decision.get("rule"), "rule"),
        list=_clip(decision.get("list_source"), "list"),
        entry=_clip(entry, "entry"),
        unblock_id=_clip(decision.get("unblock_id"), "unblock_id"),
        reference=_clip(decision.get("reference"), "reference"),
        stage=_clip(decision.get("stage"), "stage") or "request",
        enforced=_clip(decision.get("enforced"), "enforced"),
        check_visit=is_check_visit(decision),
    )
