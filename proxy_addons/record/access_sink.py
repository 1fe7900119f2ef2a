"""The recorder's access log sink: one access record for every verdict that took effect."""

from __future__ import annotations

from collections.abc import Callable

from proxy_addons.core.verdict import Verdict
from proxy_addons.record.access_records import build
from proxy_addons.record.access_writer import AccessWriter
from proxy_addons.record.seen import Seen


class AccessLogSink:
    """Builds the record and queues it on the writer in use (none yet: nothing is kept)."""

    def __init__(self, writer: Callable[[], AccessWriter | None]) -> None:
        self.writer = writer  # the access log add-on opens and replaces the writer

    def record(self, verdict: Verdict, seen: Seen) -> None:
        if not seen.took_effect:
            return
        writer = self.writer()
        if writer is not None:
            writer.submit(
                build(
                    verdict.record,
                    seen.at,
                    method=seen.method,
                    user=seen.user,
                    ip=seen.ip,
                    url=seen.url,
                )
            )
