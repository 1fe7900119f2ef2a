"""POSTing JSON to a receiver, for the channels that speak HTTP (webhook, Teams, Slack)."""

from __future__ import annotations

import http.client
import logging
import ssl
import urllib.error
import urllib.request
from typing import Any

from proxy_addons.alerts.notify.base import NotifyError, redact_url

logger = logging.getLogger(__name__)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST becomes a GET in urllib and would look delivered; treat it as failed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener(tls_context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """An opener that follows no redirects and verifies TLS."""
    return urllib.request.build_opener(
        _NoRedirects(),
        urllib.request.HTTPSHandler(context=tls_context or ssl.create_default_context()),
    )


def post(
    via: urllib.request.OpenerDirector,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    channel: str,
    kind: str,
    timeout: float,
) -> None:
    """POST `body`; any answer but 2xx, or none, raises `NotifyError` (the URL redacted)."""
    where = redact_url(url)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with via.open(request, timeout=timeout) as response:
            status = response.status
            response.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise NotifyError(f"{channel}: {where} answered {exc.code}") from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", exc)
        raise NotifyError(f"{channel}: {where} unreachable: {reason}") from exc
    if not 200 <= status < 300:
        raise NotifyError(f"{channel}: {where} answered {status}")
    logger.info("%s: sent %s to %s (%d)", channel, kind, where, status)
