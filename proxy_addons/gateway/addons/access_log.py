"""The access log add-on: opens and closes the writer of the access log.

One record per verdict that took effect, in JSON lines and in the store: the recorder
(recorder.py) settles which verdict that is and hands it to the access log sink
(`Services.access_log`, record/access_sink.py), which queues the record on the writer this
add-on keeps in `Services.access_writer` (record/access_writer.py), configured from the
options below.
"""

from __future__ import annotations

import logging
from datetime import UTC, tzinfo
from pathlib import Path

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader

from proxy_addons.gateway.services import Services
from proxy_addons.record.access_files import JSON_FILE
from proxy_addons.record.access_writer import AccessWriter

logger = logging.getLogger(__name__)

_WRITER_OPTIONS = {
    "schoolgate_var",
    "schoolgate_policy",
    "schoolgate_dsn",
    "schoolgate_access_log_max_bytes",
    "schoolgate_access_log_backups",
    "schoolgate_access_log_flush_ms",
    "schoolgate_access_log_batch",
}


class AccessLog:
    """The access log's background writer, from the options."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.writer: AccessWriter | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_access_log_max_bytes",
            int,
            50_000_000,
            "Size at which var/log/access.jsonl is rotated to access.jsonl.1 (0: never).",
        )
        loader.add_option(
            "schoolgate_access_log_backups", int, 50, "How many rotated access log files to keep."
        )
        loader.add_option(
            "schoolgate_access_log_flush_ms",
            int,
            2000,
            "How often (milliseconds) queued access log records are written to the store.",
        )
        loader.add_option(
            "schoolgate_access_log_batch",
            int,
            500,
            "Write queued access log records to the store when this many are waiting.",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & _WRITER_OPTIONS or self.services.runtime is None:
            return
        if self.writer is not None:
            self.writer.close()
        opts = ctx.options
        self.writer = AccessWriter(
            Path(opts.schoolgate_var) / JSON_FILE,
            self.services.store,
            self._retention_days,
            max_bytes=opts.schoolgate_access_log_max_bytes,
            backups=opts.schoolgate_access_log_backups,
            flush_seconds=max(10, opts.schoolgate_access_log_flush_ms) / 1000,
            batch_size=max(1, opts.schoolgate_access_log_batch),
            timezone=self._timezone,
        )
        self.writer.start()
        self.services.access_writer = self.writer

    def done(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.services.access_writer = None

    # -- helpers -------------------------------------------------------------

    def _timezone(self) -> tzinfo:
        policy = self.services.policy  # the purge counts the school's days before it deletes
        return policy.timezone if policy is not None else UTC

    def _retention_days(self) -> int | None:
        policy = self.services.policy
        return policy.monitoring.retention_days if policy is not None else None
