"""Build the notification channels the policy configures (secrets read from their files)."""

from __future__ import annotations

from proxy_addons.alerts.notify import (
    EmailNotifier,
    FanOut,
    Notifier,
    SmtpSettings,
    WebhookNotifier,
    WebhookSettings,
)
from proxy_addons.core.policy.model import Policy


def notifier_from_policy(policy: Policy) -> FanOut | None:
    """One notifier over every configured channel, or None when there are none."""
    notes = policy.notifications
    channels: list[Notifier] = []
    if notes.email is not None:
        email = notes.email
        password = email.password_file.read_text().strip() if email.password_file else None
        channels.append(
            EmailNotifier(
                SmtpSettings(
                    host=email.host,
                    port=email.port,
                    starttls=email.starttls,
                    username=email.username,
                    password=password,
                    sender=email.sender,
                )
            )
        )
    if notes.webhook is not None:
        secret = notes.webhook.secret_file.read_bytes().strip()
        channels.append(WebhookNotifier(WebhookSettings(url=notes.webhook.url, secret=secret)))
    return FanOut(channels) if channels else None
