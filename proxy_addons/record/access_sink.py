"""The recorder's access log sink: one access record for every verdict that took effect."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from proxy_addons.core.verdict import Verdict
from proxy_addons.record.access_records import build
from proxy_addons.record.access_writer import AccessWriter
from proxy_addons.record.seen import Seen


class Device(Protocol):
    """The device at an address, as its agent's fresh report says (devices/identity.py)."""

    @property
    def device_id(self) -> str: ...

    @property
    def name(self) -> str: ...


def _nowhere(ip: str | None) -> Device | None:
    return None


class AccessLogSink:
    """Builds the record and queues it on the writer in use (none yet: nothing is kept);
    names the device at the client's address when an enrolled device's agent says so."""

    def __init__(
        self,
        writer: Callable[[], AccessWriter | None],
        device_at: Callable[[str | None], Device | None] = _nowhere,
    ) -> None:
        self.writer = writer  # the access log add-on opens and replaces the writer
        self.device_at = device_at

    def record(self, verdict: Verdict, seen: Seen) -> None:
        if not seen.took_effect:
            return
        writer = self.writer()
        if writer is None:
            return
        record = build(
            verdict.record,
            seen.at,
            method=seen.method,
            user=seen.user,
            ip=seen.ip,
            url=seen.url,
        )
        device = self.device_at(record.ip)
        if device is not None:
            record = replace(record, device_id=device.device_id[:64], device_name=device.name[:200])
        writer.submit(record)
