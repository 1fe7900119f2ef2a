"""What every notify channel shares: the message (`Notification`), the one way a send fails
(`NotifyError`) and the interface each channel implements (`BaseChannel`).

A channel's `send` blocks (plain smtplib / urllib / sockets, so no extra runtime dependency)
and nothing is retried here: the alert outbox (alerts/outbox.py) retries, since only it
knows whether a retry could send a duplicate. Secrets stay secret: settings hide passwords,
webhook secrets and webhook URL paths (often credentials themselves) from their reprs, and
nothing here logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

USER_AGENT = "schoolgate-notify/1"


class NotifyError(Exception):
    """A notification was not delivered on a channel."""


@dataclass(frozen=True)
class Notification:
    """One message for people to act on, independent of how it travels."""

    kind: str  # e.g. "unblock.requested", "alert.risk_phrase"
    subject: str  # one line
    text: str  # plain-text body: what the recipient needs to act, and a link
    recipients: tuple[str, ...]  # email addresses; channels that don't address people ignore them
    link: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # structured payload for webhooks

    def __post_init__(self) -> None:
        # Subjects often carry user-supplied text (a blocked address); a line break in a
        # header would let it add headers of its own, so fold all whitespace to spaces.
        object.__setattr__(self, "subject", " ".join(self.subject.split()))
        object.__setattr__(self, "recipients", tuple(self.recipients))


class BaseChannel:
    """A way of telling people. `send` returns once delivered and raises `NotifyError`
    otherwise; `name` is the channel's name in the policy and the outbox."""

    name: str = "channel"

    def send(self, note: Notification) -> None:
        raise NotImplementedError


def redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries are often the credential."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"
