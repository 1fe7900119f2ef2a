"""Which channels the policy configures, and the channels themselves built from it (secrets
read from their files at build time, so an edited secret takes effect at the next build)."""

from __future__ import annotations

import logging

from proxy_addons.alerts.notify.base import BaseChannel
from proxy_addons.alerts.notify.email import EmailChannel, SmtpSettings
from proxy_addons.alerts.notify.incoming_webhook import IncomingWebhookSettings
from proxy_addons.alerts.notify.slack import SlackChannel
from proxy_addons.alerts.notify.syslog import SyslogChannel, SyslogSettings
from proxy_addons.alerts.notify.teams import TeamsChannel
from proxy_addons.alerts.notify.webhook import WebhookChannel, WebhookSettings
from proxy_addons.core.policy.model import Policy

logger = logging.getLogger(__name__)

CHANNELS = ("email", "webhook", "teams", "slack", "syslog")


def configured_channels(policy: Policy) -> set[str]:
    """The channels the policy asks for (whether or not they work right now)."""
    n = policy.notifications
    wanted = {
        "email": n.email is not None,
        "webhook": n.webhook is not None,
        "teams": n.teams_url_file is not None,
        "slack": n.slack_url_file is not None,
        "syslog": n.syslog is not None,
    }
    return {name for name, on in wanted.items() if on}


def build_channels(policy: Policy) -> dict[str, BaseChannel]:
    """A channel per configured name; one whose secret can't be read is left out (its
    messages wait in the outbox, and a stuck-outbox alert follows)."""
    out: dict[str, BaseChannel] = {}
    for name in sorted(configured_channels(policy), key=CHANNELS.index):
        try:
            out[name] = _build(policy, name)
        except (OSError, ValueError) as exc:
            logger.error("Alert channel %s not set up: %s", name, exc)
    return out


def _build(policy: Policy, name: str) -> BaseChannel:
    n = policy.notifications
    if name == "email" and n.email is not None:
        email = n.email
        password = email.password_file.read_text().strip() if email.password_file else None
        return EmailChannel(
            SmtpSettings(
                host=email.host,
                port=email.port,
                starttls=email.starttls,
                username=email.username,
                password=password,
                sender=email.sender,
            )
        )
    if name == "webhook" and n.webhook is not None:
        secret = n.webhook.secret_file.read_bytes().strip()
        return WebhookChannel(WebhookSettings(url=n.webhook.url, secret=secret))
    if name == "teams" and n.teams_url_file is not None:
        return TeamsChannel(IncomingWebhookSettings(n.teams_url_file.read_text().strip()))
    if name == "slack" and n.slack_url_file is not None:
        return SlackChannel(IncomingWebhookSettings(n.slack_url_file.read_text().strip()))
    if name == "syslog" and n.syslog is not None:
        s = n.syslog
        return SyslogChannel(SyslogSettings(s.host, s.port, s.protocol))
    raise ValueError(f"no channel called {name!r} in the policy")
