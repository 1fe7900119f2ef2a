"""What the chat channels (Teams, Slack) share: a service's incoming-webhook URL, which is the
credential itself, and posting the service's own JSON to it.

Chat messages are read by people and shown in previews, so they carry the subject and
`data["facts"]` (or the text), never the raw `data`.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proxy_addons.alerts.notify import http_post
from proxy_addons.alerts.notify.base import USER_AGENT, BaseChannel, Notification, redact_url


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
        return f"IncomingWebhookSettings(url={redact_url(self.url)!r}, timeout={self.timeout})"


def facts(note: Notification) -> list[tuple[str, str]]:
    """`data["facts"]`: (label, value) pairs that chat channels show as a table."""
    out: list[tuple[str, str]] = []
    for item in note.data.get("facts") or ():
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
    return out


class IncomingWebhookChannel(BaseChannel):
    """POSTs `payload(note)` as JSON; any answer but 2xx is a failure."""

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
        self._opener = http_post.opener(tls_context)

    def __repr__(self) -> str:
        url = redact_url(self.settings.url)
        return f"{type(self).__name__}(name={self.name!r}, url={url!r})"

    def payload(self, note: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, note: Notification) -> None:
        s = self.settings
        body = json.dumps(self.payload(note), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        http_post.post(
            self._opener, s.url, body, headers, channel=self.name, kind=note.kind, timeout=s.timeout
        )
