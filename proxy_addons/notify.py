"""Telling people that something needs them: email and signed webhooks behind one interface.

The unblock workflow (and later alerting) builds a `Notification` and hands it to a `Notifier`;
it neither knows nor cares whether that is SMTP, a webhook or both (`FanOut`). Sending blocks
(plain smtplib / urllib, so no extra runtime dependency), so code on mitmproxy's event loop
should call `send` through `asyncio.to_thread`. A failed send raises `NotifyError` and nothing
is retried here: only the caller knows whether a retry could send a duplicate.

Secrets stay secret: settings hide passwords, webhook secrets and webhook URL paths (which are
often credentials themselves) from their reprs, and nothing here logs them.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Schoolgate-Signature"
TIMESTAMP_HEADER = "X-Schoolgate-Timestamp"
_SIGNATURE_PREFIX = "sha256="
_USER_AGENT = "schoolgate-notify/1"


class NotifyError(Exception):
    """A notification was not delivered on a channel (or, from `FanOut`, on any channel)."""


@dataclass(frozen=True)
class Notification:
    """One message for people to act on, independent of how it travels."""

    kind: str  # e.g. "unblock.requested", "unblock.decided"
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


class Notifier(Protocol):
    """A channel. `send` returns once delivered and raises `NotifyError` otherwise.

    The return type is `object`, not None, so that `FanOut` (which returns the channels that
    failed) is itself a Notifier; callers that only need "delivered or raised" ignore it.
    """

    name: str

    def send(self, note: Notification) -> object: ...


def _redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries are often the credential."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


# ---------------------------------------------------------------------------------------------
# Email


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """Where and how to hand mail over. Keyword-only so a password never lands in `port`."""

    host: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str
    timeout: float = 10

    def __post_init__(self) -> None:
        if self.username and not self.starttls:
            # smtplib would happily send AUTH PLAIN in the clear.
            raise ValueError("SMTP authentication needs starttls=True")
        if "@" not in self.sender_address:
            raise ValueError("SMTP sender must be an email address")

    @property
    def sender_address(self) -> str:
        """The bare address of `sender`, which may be written "Name <address>"."""
        return email.utils.parseaddr(self.sender)[1]


class EmailNotifier:
    """Sends a notification as one UTF-8 plain-text email through an SMTP submission server.

    With `starttls` the server must offer STARTTLS and present a certificate that verifies for
    `host` (no silent fallback to plain text); only then is AUTH attempted.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        name: str = "email",
    ) -> None:
        self.settings = settings
        self.name = name
        self._tls_context = tls_context

    def __repr__(self) -> str:
        s = self.settings
        return f"EmailNotifier(name={self.name!r}, host={s.host!r}, port={s.port})"

    def build_message(self, note: Notification) -> EmailMessage:
        """The email as it will be sent; separate so its shape can be checked without SMTP."""
        s = self.settings
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = s.sender
        msg["To"] = ", ".join(note.recipients)
        msg["Subject"] = note.subject
        msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
        # An explicit domain: make_msgid's default asks the resolver for our FQDN, which can
        # stall for seconds on a school network with broken DNS.
        msg["Message-ID"] = email.utils.make_msgid(
            "schoolgate", domain=s.sender_address.rpartition("@")[2]
        )
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to us
        msg["X-Schoolgate-Kind"] = note.kind
        body = note.text.rstrip("\n")
        if note.link and note.link not in body:
            body += f"\n\n{note.link}"
        msg.set_content(body + "\n", charset="utf-8")
        return msg

    def send(self, note: Notification) -> None:
        s = self.settings
        if not note.recipients:
            raise NotifyError(f"{self.name}: notification {note.kind!r} has no recipients")
        try:
            msg = self.build_message(note)
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    context = self._tls_context or ssl.create_default_context()
                    smtp.starttls(context=context)
                if s.username:
                    smtp.login(s.username, s.password or "")
                refused = smtp.send_message(
                    msg, from_addr=s.sender_address, to_addrs=note.recipients
                )
        except smtplib.SMTPException as exc:
            raise NotifyError(f"{self.name}: SMTP {s.host}:{s.port} failed: {exc}") from exc
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            raise NotifyError(
                f"{self.name}: SMTP {s.host}:{s.port} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if refused:
            # Delivered to some; a retry would duplicate for them, so report rather than raise.
            logger.warning(
                "%s: %s accepted for %d of %d recipients; refused: %s",
                self.name,
                note.kind,
                len(note.recipients) - len(refused),
                len(note.recipients),
                ", ".join(sorted(refused)),
            )
        else:
            logger.info(
                "%s: sent %s to %d recipient(s)", self.name, note.kind, len(note.recipients)
            )


# ---------------------------------------------------------------------------------------------
# Webhook


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
        return f"WebhookSettings(url={_redact_url(self.url)!r}, timeout={self.timeout})"


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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST becomes a GET in urllib and would look delivered; treat it as failed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookNotifier:
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
        self._opener = urllib.request.build_opener(
            _NoRedirects(),
            urllib.request.HTTPSHandler(context=tls_context or ssl.create_default_context()),
        )

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, url={_redact_url(self.settings.url)!r})"

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
        where = _redact_url(s.url)
        sent_at = datetime.now(UTC)
        timestamp = str(int(sent_at.timestamp()))
        body = self.body(note, sent_at)
        request = urllib.request.Request(
            s.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": _USER_AGENT,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign_webhook(s.secret, timestamp, body),
            },
        )
        try:
            with self._opener.open(request, timeout=s.timeout) as response:
                status = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise NotifyError(f"{self.name}: {where} answered {exc.code}") from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"{self.name}: {where} unreachable: {reason}") from exc
        if not 200 <= status < 300:
            raise NotifyError(f"{self.name}: {where} answered {status}")
        logger.info("%s: sent %s to %s (%d)", self.name, note.kind, where, status)


# ---------------------------------------------------------------------------------------------
# Several channels


class FanOut:
    """Sends through every channel; one channel down must not silence the others.

    Raises only when nothing got through, since then the caller must act (retry, show an
    error); otherwise the failed channels are logged and returned.
    """

    name = "fanout"

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        if not notifiers:
            raise ValueError("FanOut needs at least one notifier")
        self.notifiers = tuple(notifiers)

    def send(self, note: Notification) -> list[str]:
        failed: list[str] = []
        for notifier in self.notifiers:
            try:
                notifier.send(note)
            except NotifyError as exc:
                logger.warning("%s not sent via %s: %s", note.kind, notifier.name, exc)
                failed.append(notifier.name)
            except Exception:  # a bug in one channel must not stop the next
                logger.exception("%s not sent via %s: unexpected error", note.kind, notifier.name)
                failed.append(notifier.name)
        if len(failed) == len(self.notifiers):
            raise NotifyError(f"{note.kind} not sent on any channel: {', '.join(failed)}")
        return failed
