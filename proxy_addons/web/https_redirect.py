"""The plain-HTTP listener beside the HTTPS admin app: it only sends browsers to HTTPS.

Someone typing the gateway's name into a browser gets http:// first; rather than a refused
connection (or a sign-in form whose Secure cookie would never come back), they are sent to
the same host on the HTTPS port. The host is kept only when the certificate names it (a
Host header is the client's to write): otherwise the certificate's first name is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _host_asked(environ: dict[str, Any]) -> str:
    raw = str(environ.get("HTTP_HOST") or "")
    try:
        return (urlsplit(f"//{raw}").hostname or "").rstrip(".")
    except ValueError:
        return ""


def redirect_to_https(names: Iterable[str], https_port: int) -> WSGIApp:
    """A WSGI app answering every request with a 308 to the same path over HTTPS."""
    known = [n.lower() for n in names]
    if not known:
        raise ValueError("the HTTPS redirect needs at least one name the certificate holds")
    port = "" if https_port == 443 else f":{https_port}"

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        asked = _host_asked(environ).lower()
        host = asked if asked in known else known[0]
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        path = quote(str(environ.get("PATH_INFO") or "/"), safe="/%:@!$&'()*+,;=-._~")
        query = str(environ.get("QUERY_STRING") or "")
        target = f"https://{host}{port}{path}" + (f"?{query}" if query else "")
        body = f"This site is served over HTTPS: {target}\n".encode()
        start_response(
            "308 Permanent Redirect",
            [
                ("Location", target),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    return app


__all__ = ["redirect_to_https"]
