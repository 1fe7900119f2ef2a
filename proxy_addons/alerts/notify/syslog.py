"""The syslog channel: technical alerts to a SIEM as RFC 5424 messages with structured data,
over UDP or TCP (octet counting, RFC 6587)."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

from proxy_addons.alerts.notify.base import BaseChannel, Notification, NotifyError

logger = logging.getLogger(__name__)

SYSLOG_SD_ID = "schoolgate@32473"  # 32473: the private enterprise number RFC 5612 sets aside
_SYSLOG_SEVERITY = {5: 2, 4: 3, 3: 4, 2: 5, 1: 6}  # ours (5 = worst) -> crit, err, warning, ...
_SYSLOG_NOTICE = 5


@dataclass(frozen=True)
class SyslogSettings:
    """Where the SIEM's collector listens."""

    host: str
    port: int = 514
    protocol: str = "udp"  # udp | tcp
    facility: int = 13  # log audit
    app_name: str = "schoolgate"
    hostname: str = field(default_factory=socket.gethostname)
    timeout: float = 5

    def __post_init__(self) -> None:
        if self.protocol not in ("udp", "tcp"):
            raise ValueError("syslog protocol must be udp or tcp")
        if not 0 <= self.facility <= 23:
            raise ValueError("syslog facility must be from 0 to 23")
        if not 0 < self.port < 65536:
            raise ValueError("syslog port must be from 1 to 65535")


def _syslog_token(text: str, limit: int) -> str:
    """A header field: printable ASCII without spaces, or the nil value."""
    token = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def _sd_name(text: str) -> str:
    name = "".join(c for c in text if 33 <= ord(c) <= 126 and c not in '= ]"')[:32]
    return name or "x"


def _sd_value(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class SyslogChannel(BaseChannel):
    """Only notifications marked `data["audience"] == "technical"` are accepted: safeguarding
    alerts name pupils and a SIEM is read by technical staff, so one arriving here is a
    routing bug, refused loudly rather than logged where it shouldn't be.
    """

    def __init__(self, settings: SyslogSettings, *, name: str = "syslog") -> None:
        self.settings = settings
        self.name = name

    def __repr__(self) -> str:
        s = self.settings
        return f"SyslogChannel(name={self.name!r}, {s.protocol}://{s.host}:{s.port})"

    def format(self, note: Notification, at: datetime | None = None) -> bytes:
        """One RFC 5424 message (without transport framing)."""
        s = self.settings
        when = (at or datetime.now(UTC)).astimezone(UTC)
        severity = note.data.get("severity")
        level = _SYSLOG_SEVERITY.get(severity, _SYSLOG_NOTICE) if isinstance(severity, int) else 5
        params: list[tuple[str, object]] = [("kind", note.kind)]
        for key, value in note.data.items():
            if key == "facts":
                continue
            if isinstance(value, dict):
                params += [(k, v) for k, v in value.items() if v is not None]
            elif isinstance(value, (str, int, float, bool)):
                params.append((key, value))
        sd = "[" + SYSLOG_SD_ID + "".join(f' {_sd_name(k)}="{_sd_value(v)}"' for k, v in params)
        header = " ".join(
            (
                f"<{s.facility * 8 + level}>1",
                when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                _syslog_token(s.hostname, 255),
                _syslog_token(s.app_name, 48),
                _syslog_token(str(os.getpid()), 128),
                _syslog_token(note.kind, 32),
            )
        )
        return f"{header} {sd}] ".encode() + b"\xef\xbb\xbf" + note.subject.encode("utf-8")

    def send(self, note: Notification) -> None:
        s = self.settings
        if note.data.get("audience") != "technical":
            raise NotifyError(f"{self.name}: only technical alerts go to syslog, not {note.kind}")
        message = self.format(note)
        try:
            if s.protocol == "udp":
                with socket.socket(_family(s.host), socket.SOCK_DGRAM) as sock:
                    sock.settimeout(s.timeout)
                    sock.sendto(message, (s.host, s.port))
            else:
                with socket.create_connection((s.host, s.port), timeout=s.timeout) as sock:
                    sock.sendall(f"{len(message)} ".encode() + message)
        except OSError as exc:
            raise NotifyError(
                f"{self.name}: {s.protocol}://{s.host}:{s.port} failed: {type(exc).__name__}: {exc}"
            ) from exc
        logger.info("%s: sent %s to %s:%d", self.name, note.kind, s.host, s.port)


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][0]
    except socket.gaierror:
        return socket.AF_INET
