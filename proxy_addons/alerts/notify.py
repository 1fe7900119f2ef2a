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
import os
import smtplib
import socket
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


# ---------------------------------------------------------------------------------------------
# Chat channels: Microsoft Teams and Slack incoming webhooks


@dataclass(frozen=True)
class IncomingWebhookSettings:
    """A chat service's incoming-webhook URL: the URL itself is the credential."""

    url: str = field(repr=False)
    timeout: float = 10

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("incoming webhook URL must be an http:// or https:// URL with a host")

    def __repr__(self) -> str:
        return f"IncomingWebhookSettings(url={_redact_url(self.url)!r}, timeout={self.timeout})"


def _facts(note: Notification) -> list[tuple[str, str]]:
    """`data["facts"]`: (label, value) pairs that chat channels show as a table."""
    out: list[tuple[str, str]] = []
    for item in note.data.get("facts") or ():
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
    return out


class _IncomingWebhook:
    """POSTs a chat service's JSON; any answer but 2xx is a failure.

    Chat messages are read by people and shown in previews, so they carry the subject and
    `data["facts"]` (or the text), never the raw `data`.
    """

    name = "chat"

    def __init__(
        self,
        settings: IncomingWebhookSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        if name:
            self.name = name
        self._opener = urllib.request.build_opener(
            _NoRedirects(),
            urllib.request.HTTPSHandler(context=tls_context or ssl.create_default_context()),
        )

    def __repr__(self) -> str:
        url = _redact_url(self.settings.url)
        return f"{type(self).__name__}(name={self.name!r}, url={url!r})"

    def payload(self, note: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, note: Notification) -> None:
        s = self.settings
        where = _redact_url(s.url)
        body = json.dumps(self.payload(note), ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            s.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT},
        )
        try:
            with self._opener.open(request, timeout=s.timeout) as response:
                status = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise NotifyError(f"{self.name}: {where} answered {exc.code}") from exc
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"{self.name}: {where} unreachable: {reason}") from exc
        if not 200 <= status < 300:
            raise NotifyError(f"{self.name}: {where} answered {status}")
        logger.info("%s: sent %s to %s (%d)", self.name, note.kind, where, status)


def _markdown_escape(text: str) -> str:
    """Backslash-escape what Adaptive Cards' Markdown subset acts on (emphasis and links), so
    user-typed text (a search) shows as typed and can't become a link."""
    return "".join("\\" + c if c in "\\*_[]" else c for c in text)


class TeamsNotifier(_IncomingWebhook):
    """A Microsoft Teams incoming webhook (or Workflows "post to a channel" webhook).

    Posts one Adaptive Card (the format both accept): the subject as a heading, the facts as
    a FactSet, an "Open" button for the link.
    """

    name = "teams"

    def payload(self, note: Notification) -> dict[str, Any]:
        severity = note.data.get("severity")
        urgent = isinstance(severity, int) and severity >= 4
        heading: dict[str, Any] = {
            "type": "TextBlock",
            "text": _markdown_escape(note.subject),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
        if urgent:
            heading["color"] = "Attention"
        body: list[dict[str, Any]] = [heading]
        facts = _facts(note)
        if facts:
            body.append(
                {
                    "type": "FactSet",
                    "facts": [
                        {"title": _markdown_escape(k), "value": _markdown_escape(v)}
                        for k, v in facts
                    ],
                }
            )
        else:
            body.append({"type": "TextBlock", "text": _markdown_escape(note.text), "wrap": True})
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "msteams": {"width": "Full"},
            "body": body,
        }
        if note.link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": note.link}]
        return {
            "type": "message",
            "summary": note.subject,
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }


def _slack_escape(text: str) -> str:
    """Slack's three control characters; escaping `<` also stops <!channel>-style mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier(_IncomingWebhook):
    """A Slack incoming webhook: Block Kit with a header, the facts as fields, and the link.

    The top-level `text` is what notifications and lock screens show, so it is the subject.
    """

    name = "slack"

    def payload(self, note: Notification) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": note.subject[:150]}}
        ]
        facts = _facts(note)
        for start in range(0, len(facts), 10):  # at most 10 fields per section
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {
                            "type": "mrkdwn",
                            "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"[:2000],
                        }
                        for k, v in facts[start : start + 10]
                    ],
                }
            )
        if not facts:
            text = _slack_escape(note.text)[:3000]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        if note.link:
            blocks.append(
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"<{note.link}|Open in Schoolgate>"}],
                }
            )
        return {
            "text": _slack_escape(note.subject),
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }


# ---------------------------------------------------------------------------------------------
# Syslog (RFC 5424) for a SIEM

SYSLOG_SD_ID = "schoolgate@32473"  # 32473: the private enterprise number RFC 5612 sets aside
_SYSLOG_SEVERITY = {5: 2, 4: 3, 3: 4, 2: 5, 1: 6}  # ours (5 = worst) -> crit, err, warning, ...
_SYSLOG_NOTICE = 5


@dataclass(frozen=True)
class SyslogSettings:
    """Where the SIEM's collector listens; TCP frames messages by octet counting (RFC 6587)."""

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


class SyslogNotifier:
    """Sends technical alerts to a SIEM as RFC 5424 messages with structured data.

    Only notifications marked `data["audience"] == "technical"` are accepted: safeguarding
    alerts name pupils and a SIEM is read by technical staff, so one arriving here is a
    routing bug, refused loudly rather than logged where it shouldn't be.
    """

    def __init__(self, settings: SyslogSettings, *, name: str = "syslog") -> None:
        self.settings = settings
        self.name = name

    def __repr__(self) -> str:
        s = self.settings
        return f"SyslogNotifier(name={self.name!r}, {s.protocol}://{s.host}:{s.port})"

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
