"""The Microsoft Teams channel: an incoming webhook (or a Workflows "post to a channel"
webhook) given one Adaptive Card, the format both accept."""

from __future__ import annotations

from typing import Any

from proxy_addons.alerts.notify.base import Notification
from proxy_addons.alerts.notify.incoming_webhook import IncomingWebhookChannel, facts


def _markdown_escape(text: str) -> str:
    """Backslash-escape what Adaptive Cards' Markdown subset acts on (emphasis and links), so
    user-typed text (a search) shows as typed and can't become a link."""
    return "".join("\\" + c if c in "\\*_[]" else c for c in text)


class TeamsChannel(IncomingWebhookChannel):
    """The subject as a heading, the facts as a FactSet, an "Open" button for the link."""

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
        shown = facts(note)
        if shown:
            body.append(
                {
                    "type": "FactSet",
                    "facts": [
                        {"title": _markdown_escape(k), "value": _markdown_escape(v)}
                        for k, v in shown
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
