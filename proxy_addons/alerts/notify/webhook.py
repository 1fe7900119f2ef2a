"""The webhook channel: the notification as JSON, signed with a shared secret (HMAC-SHA256 over
the timestamp and the body), so a receiver can tell it is ours, unaltered and recent."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from proxy_addons.alerts.notify import http_post
from proxy_addons.alerts.notify.base import USER_AGENT, BaseChannel, Notification, redact_url

SIGNATURE_HEADER = "X-Schoolgate-Signature"
TIMESTAMP_HEADER = "X-Schoolgate-Timestamp"
_SIGNATURE_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookSettings:
    """A receiver URL and the shared secret that signs each request."""

    url: str
    secret: bytes = field(repr=False)
    timeout: float = 10

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        # urllib would also open file:// and ftp:// URLs; a webhook is only ever HTTP(S).
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook URL must be an http:// or https:// URL with a host")
        if not self.secret:
            raise ValueError("webhook secret must not be empty")

    def __repr__(self) -> str:
        return f"WebhookSettings(url={redact_url(self.url)!r}, timeout={self.timeout})"


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value; the timestamp is signed too, so it cannot be refreshed."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return _SIGNATURE_PREFIX + mac.hexdigest()


def verify_webhook_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = 300,
) -> bool:
    """For receivers: is this request ours, unaltered and recent?

    Timestamps more than `tolerance` seconds away from `now` (either way) are refused, which
    bounds replays to that window; receivers that must refuse every replay should also
    remember what they have seen within it.
    """
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    if not signature.isascii():
        return False
    expected = sign_webhook(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.encode())


class WebhookChannel(BaseChannel):
    """POSTs a notification as signed JSON; any answer but 2xx is a failure."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        name: str = "webhook",
    ) -> None:
        self.settings = settings
        self.name = name
        self._opener = http_post.opener(tls_context)

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={redact_url(self.settings.url)!r})"

    @staticmethod
    def body(note: Notification, sent_at: datetime) -> bytes:
        payload = {
            "kind": note.kind,
            "subject": note.subject,
            "text": note.text,
            "link": note.link,
            "data": note.data,
            "sent_at": sent_at.isoformat(timespec="seconds"),
        }
        # default=str: datetimes and paths in `data` should not cost the notification.
        return json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")

    def send(self, note: Notification) -> None:
        s = self.settings
        sent_at = datetime.now(UTC)
        timestamp = str(int(sent_at.timestamp()))
        body = self.body(note, sent_at)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_webhook(s.secret, timestamp, body),
        }
        http_post.post(
            self._opener, s.url, body, headers, channel=self.name, kind=note.kind, timeout=s.timeout
        )
