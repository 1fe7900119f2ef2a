"""The email channel: one UTF-8 plain-text message through an SMTP submission server."""

from __future__ import annotations

import email.policy
import email.utils
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from proxy_addons.alerts.notify.base import BaseChannel, Notification, NotifyError

logger = logging.getLogger(__name__)


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


class EmailChannel(BaseChannel):
    """Sends a notification as one email to its recipients.

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
        return f"EmailChannel(name={self.name!r}, host={s.host!r}, port={s.port})"

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
