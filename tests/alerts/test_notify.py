"""Notifiers against real receivers: an aiosmtpd server with STARTTLS and AUTH, and a local
HTTP server that checks webhook signatures the way a school's receiver would."""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import http.server
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy_addons.alerts.notify.base import Notification, NotifyError
from proxy_addons.alerts.notify.email import EmailChannel, SmtpSettings
from proxy_addons.alerts.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookSettings,
    verify_webhook_signature,
)

USERNAME = "gateway"
PASSWORD = "s3cret-Pa55word!"
SECRET = b"whsec-7f3a9c1e5b2d4f60"
SENDER = "Schoolgate <gateway@school.example>"
PLAIN_AUTH = f"\0{USERNAME}\0{PASSWORD}".encode()
LINK = "https://portal.school.example/unblock/SG-BCDF-GHJK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def note(**overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "kind": "unblock.requested",
        "subject": "Unblock request SG-BCDF-GHJK: cafe.example",
        "text": f"Ms Doe asked to unblock cafe.example for Café ❤ club.\nDecide: {LINK}\n",
        "recipients": ("dsl@school.example", "it@school.example"),
        "link": LINK,
        "data": {
            "reference": "SG-BCDF-GHJK",
            "host": "cafe.example",
            "at": datetime.date(2025, 1, 2),
        },
    }
    values.update(overrides)
    return Notification(**values)


# --- a real SMTP server -------------------------------------------------------------------------


@dataclass
class Certs:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """What a deployment with a private CA would pass: trust exactly this certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A self-signed certificate for 127.0.0.1 that passes Python 3.13's strict verification."""
    tmp = tmp_path_factory.mktemp("smtp-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    paths = Certs(tmp / "smtp.pem", tmp / "smtp.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: bytes | None


@dataclass
class Mailbox:
    """Keeps what the server accepted, and how it was handed over."""

    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        auth = session.auth_data
        self.messages.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                tls=session.ssl is not None,
                login=auth.login if isinstance(auth, LoginPassword) else None,
            )
        )
        return "250 OK"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox


@pytest.fixture(scope="module")
def smtp_server(certs: Certs) -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=certs.server_context(),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def plain_smtp_server() -> Iterator[SmtpServer]:
    """A server that offers no STARTTLS, like a misconfigured relay or a downgrade attack."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()


def smtp_settings(port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": USERNAME,
        "password": PASSWORD,
        "sender": SENDER,
        "timeout": 5,
    }
    values.update(overrides)
    return SmtpSettings(**values)


def assert_no_secrets(text: str) -> None:
    """Neither the password (raw, or as AUTH PLAIN/LOGIN would encode it) nor the secret."""
    encoded = [base64.b64encode(b).decode() for b in (PASSWORD.encode(), PLAIN_AUTH)]
    for secret in (PASSWORD, SECRET.decode(), SECRET.hex(), *encoded):
        assert secret not in text


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Captures everything at DEBUG and, afterwards, checks that no secret was logged."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    # caplog.text would only show the teardown phase here; the test ran in "call".
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    assert_no_secrets("\n".join(r.getMessage() for r in records))


def test_email_arrives_over_starttls_with_auth(
    smtp_server: SmtpServer, certs: Certs, logs: pytest.LogCaptureFixture
) -> None:
    notifier = EmailChannel(smtp_settings(smtp_server.port), tls_context=certs.client_context())
    before = len(smtp_server.mailbox.messages)
    notifier.send(note())

    assert len(smtp_server.mailbox.messages) == before + 1
    got = smtp_server.mailbox.messages[-1]
    assert got.tls and got.login == USERNAME.encode()
    assert got.mail_from == "gateway@school.example"
    assert got.rcpt_tos == ["dsl@school.example", "it@school.example"]
    msg = got.message
    assert msg["Subject"] == "Unblock request SG-BCDF-GHJK: cafe.example"
    assert msg["From"] == SENDER
    assert msg["To"] == "dsl@school.example, it@school.example"
    assert msg["Message-ID"].endswith("@school.example>")
    assert msg["Date"] and msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Schoolgate-Kind"] == "unblock.requested"
    assert msg.get_content_charset() == "utf-8"
    body = msg.get_content()
    assert "Café ❤ club" in body
    assert body.count(LINK) == 1  # already in the text, so not added twice
    assert "sent unblock.requested to 2 recipient(s)" in logs.text


def test_email_adds_link_missing_from_text_and_folds_subject(
    smtp_server: SmtpServer, certs: Certs
) -> None:
    notifier = EmailChannel(smtp_settings(smtp_server.port), tls_context=certs.client_context())
    notifier.send(note(text="Please decide.", subject="Unblock\r\nBcc: evil@example.org  now"))
    msg = smtp_server.mailbox.messages[-1].message
    assert msg["Subject"] == "Unblock Bcc: evil@example.org now"
    assert msg["Bcc"] is None
    assert msg.get_content().replace("\r\n", "\n") == f"Please decide.\n\n{LINK}\n"


def test_wrong_password_is_notify_error(
    smtp_server: SmtpServer, certs: Certs, logs: pytest.LogCaptureFixture
) -> None:
    notifier = EmailChannel(
        smtp_settings(smtp_server.port, password="not-the-password"),
        tls_context=certs.client_context(),
    )
    with pytest.raises(NotifyError, match="535") as info:
        notifier.send(note())
    assert "not-the-password" not in str(info.value)


def test_untrusted_certificate_is_notify_error(smtp_server: SmtpServer) -> None:
    """Without the test CA, the system trust store must reject the self-signed certificate."""
    before = len(smtp_server.mailbox.messages)
    with pytest.raises(NotifyError, match="CERTIFICATE_VERIFY_FAILED"):
        EmailChannel(smtp_settings(smtp_server.port)).send(note())
    assert len(smtp_server.mailbox.messages) == before


def test_no_starttls_offered_is_notify_error(plain_smtp_server: SmtpServer, certs: Certs) -> None:
    notifier = EmailChannel(
        smtp_settings(plain_smtp_server.port), tls_context=certs.client_context()
    )
    with pytest.raises(NotifyError, match="STARTTLS"):
        notifier.send(note())
    assert plain_smtp_server.mailbox.messages == []


def test_smtp_server_down_is_notify_error(logs: pytest.LogCaptureFixture) -> None:
    notifier = EmailChannel(smtp_settings(free_port()))
    with pytest.raises(NotifyError, match="ConnectionRefusedError"):
        notifier.send(note())


def test_no_recipients_is_notify_error() -> None:
    with pytest.raises(NotifyError, match="no recipients"):
        EmailChannel(smtp_settings(free_port())).send(note(recipients=()))


def test_smtp_settings_refuse_auth_in_the_clear_and_hide_password() -> None:
    with pytest.raises(ValueError, match="starttls"):
        smtp_settings(25, starttls=False)
    settings = smtp_settings(587)
    notifier = EmailChannel(settings)
    assert_no_secrets(repr(settings) + repr(notifier) + str(settings))
    assert "password" not in repr(settings)


# --- a real webhook receiver --------------------------------------------------------------------


@dataclass
class Delivery:
    body: bytes
    timestamp: str
    signature: str
    content_type: str
    valid: bool


class _Receiver(http.server.ThreadingHTTPServer):
    secret: bytes
    status: int
    deliveries: list[Delivery]


class _Hook(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        timestamp = self.headers.get(TIMESTAMP_HEADER, "")
        signature = self.headers.get(SIGNATURE_HEADER, "")
        valid = verify_webhook_signature(self.server.secret, timestamp, body, signature)
        self.server.deliveries.append(
            Delivery(body, timestamp, signature, self.headers.get("Content-Type", ""), valid)
        )
        status = self.server.status if valid else 401
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Hook)
    server.secret, server.status, server.deliveries = SECRET, 200, []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def hook_url(server: _Receiver) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hooks/schoolgate/tok-abc123"


def test_webhook_delivers_signed_json(receiver: _Receiver, logs: pytest.LogCaptureFixture) -> None:
    WebhookChannel(WebhookSettings(hook_url(receiver), SECRET, timeout=5)).send(note())

    [got] = receiver.deliveries
    assert got.valid
    assert got.signature.startswith("sha256=") and len(got.signature) == 7 + 64
    assert abs(int(got.timestamp) - time.time()) < 5
    assert got.content_type == "application/json; charset=utf-8"
    payload = json.loads(got.body.decode("utf-8"))
    assert set(payload) == {"kind", "subject", "text", "link", "data", "sent_at"}
    assert payload["kind"] == "unblock.requested"
    assert payload["subject"] == "Unblock request SG-BCDF-GHJK: cafe.example"
    assert "Café ❤ club" in payload["text"]
    assert payload["link"] == LINK
    assert payload["data"] == {
        "reference": "SG-BCDF-GHJK",
        "host": "cafe.example",
        "at": "2025-01-02",
    }
    sent_at = datetime.datetime.fromisoformat(payload["sent_at"])
    assert int(sent_at.timestamp()) == int(got.timestamp)
    assert "tok-abc123" not in logs.text  # the URL's path may be a credential


def test_signature_rejects_tampering_wrong_secret_and_stale(receiver: _Receiver) -> None:
    WebhookChannel(WebhookSettings(hook_url(receiver), SECRET)).send(note())
    [got] = receiver.deliveries
    ts, body, sig = got.timestamp, got.body, got.signature
    now = float(ts)

    assert verify_webhook_signature(SECRET, ts, body, sig, now=now)
    assert not verify_webhook_signature(SECRET, ts, body.replace(b"cafe", b"evil"), sig, now=now)
    assert not verify_webhook_signature(b"some-other-secret", ts, body, sig, now=now)
    assert not verify_webhook_signature(SECRET, str(int(ts) + 1), body, sig, now=now)
    # Replay of a captured request later on, or one dated in the future.
    assert verify_webhook_signature(SECRET, ts, body, sig, now=now + 300)
    assert not verify_webhook_signature(SECRET, ts, body, sig, now=now + 301)
    assert not verify_webhook_signature(SECRET, ts, body, sig, now=now - 301)
    assert not verify_webhook_signature(SECRET, ts, body, sig, now=now + 60, tolerance=30)
    # Malformed inputs are just "no", never an exception.
    for bad_ts in ("", "-1", "1e9", "١٢٣", " " + ts):
        assert not verify_webhook_signature(SECRET, bad_ts, body, sig, now=now)
    for bad_sig in ("", sig[7:], "sha1=" + sig[7:], sig.upper(), sig + "0", "sha256=é"):
        assert not verify_webhook_signature(SECRET, ts, body, bad_sig, now=now)


def test_receiver_refusing_signature_is_notify_error(receiver: _Receiver) -> None:
    notifier = WebhookChannel(WebhookSettings(hook_url(receiver), b"not-the-shared-secret"))
    with pytest.raises(NotifyError, match="answered 401"):
        notifier.send(note())
    assert [d.valid for d in receiver.deliveries] == [False]


@pytest.mark.parametrize("status", [500, 302])
def test_webhook_non_2xx_is_notify_error(receiver: _Receiver, status: int) -> None:
    """A 302 too: urllib would otherwise follow it with a GET and report success."""
    receiver.status = status
    notifier = WebhookChannel(WebhookSettings(hook_url(receiver), SECRET))
    with pytest.raises(NotifyError, match=f"answered {status}") as info:
        notifier.send(note())
    assert "tok-abc123" not in str(info.value)
    assert len(receiver.deliveries) == 1  # no redirect followed, no retry


def test_webhook_unreachable_is_notify_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(NotifyError, match="unreachable"):
        WebhookChannel(WebhookSettings(url, SECRET, timeout=2)).send(note())


def test_webhook_settings_validate_and_hide_secret() -> None:
    for url in ("file:///etc/passwd", "ftp://example.org/x", "https:///nohost"):
        with pytest.raises(ValueError):
            WebhookSettings(url, SECRET)
    with pytest.raises(ValueError):
        WebhookSettings("https://example.org/hook", b"")
    settings = WebhookSettings("https://hooks.example.org:8443/T0/B1/tok-abc123?k=v", SECRET)
    text = repr(settings) + str(settings) + repr(WebhookChannel(settings))
    assert_no_secrets(text)
    assert "tok-abc123" not in text and "hooks.example.org:8443" in text
