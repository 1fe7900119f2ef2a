"""The Slack channel: an incoming webhook given Block Kit (a header, the facts as fields, the
link). The top-level `text` is what notifications and lock screens show: the subject."""

from __future__ import annotations

from typing import Any

from proxy_addons.alerts.notify.base import Notification
from proxy_addons.alerts.notify.incoming_webhook import IncomingWebhookChannel, facts


def _slack_escape(text: str) -> str:
    """Slack's three control characters; escaping `<` also stops <!channel>-style mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(IncomingWebhookChannel):
    name = "slack"

    def payload(self, note: Notification) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": note.subject[:150]}}
        ]
        shown = facts(note)
        for start in range(0, len(shown), 10):  # at most 10 fields per section
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {
                            "type": "mrkdwn",
                            "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"[:2000],
                        }
                        for k, v in shown[start : start + 10]
                    ],
                }
            )
        if not shown:
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
