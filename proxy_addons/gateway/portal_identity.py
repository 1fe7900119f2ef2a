"""Who is asking the portal, passed out of band; and the portal forms' CSRF tokens.

The portal is a WSGI app served by the proxy itself (portal.py). Identity must never travel
as a request header: the WSGI layer turns `X-Schoolgate-User`, `X_Schoolgate_User` and
`x-schoolgate-user` into one environ key, so any header the proxy "sets" a client can set
too. Here the proxy's own view of the connection (the proxy sign-in and the peer address)
goes into the environ under a key no header can produce (`schoolgate.who`, not `HTTP_...`),
and every client-sent `X-Schoolgate-*` header, in any spelling, is dropped before the app.

The portal's forms carry a token bound to that identity and to the form's own path
(`FormTokens`): an HMAC of the user, address, path, time and a random nonce, with a secret in
var/ shared by the gateway's workers. Tokens are only ever written into pages the portal
serves on its own origin: a block page is served on the blocked site's origin, where script
on an allowed page of the same site could read it, so block pages carry none and their posts
are shown back for confirmation on the portal first (portal_forms.py).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asgiref.wsgi
from mitmproxy import ctx, http
from mitmproxy.addons import asgiapp

from proxy_addons.gateway.flows import proxyauth_user
from proxy_addons.store.secret_file import ensure_secret

logger = logging.getLogger(__name__)

ENVIRON_KEY = "schoolgate.who"  # no header becomes this: theirs are HTTP_* (PEP 3333)
HEADER_PREFIX = "x-schoolgate-"
SECRET_FILE = "portal-secret"
TOKEN_SECONDS = 2 * 3600  # a portal page left open through a lesson still works
MAX_TOKEN = 80
FORM_FIELD = "csrf_token"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Who:
    """The person asking, as the proxy knows them: its sign-in (if any) and their address."""

    user: str | None = None
    ip: str | None = None


NOBODY = Who()


def who_of(flow: http.HTTPFlow) -> Who:
    """The proxy's view of who sent `flow`: never anything the request itself says."""
    peer = flow.client_conn.peername
    return Who(proxyauth_user(flow), str(peer[0]) if peer else None)


def is_identity_header(name: str) -> bool:
    """`X-Schoolgate-User`, `x_schoolgate_ip`, ` X-SCHOOLGATE-...`: all one to WSGI."""
    return name.strip().lower().replace("_", "-").startswith(HEADER_PREFIX)


def drop_identity_headers(headers: http.Headers) -> list[str]:
    """Remove every header a client could mean as identity; returns the names removed."""
    names = [name for name, _ in headers.fields if is_identity_header(name.decode("latin-1"))]
    headers.fields = tuple((n, v) for n, v in headers.fields if n not in names)
    return [name.decode("latin-1") for name in names]


class _WithWho(asgiref.wsgi.WsgiToAsgiInstance):
    def build_environ(self, scope: Scope, body: Any) -> dict[str, Any]:
        environ: dict[str, Any] = super().build_environ(scope, body)
        environ[ENVIRON_KEY] = scope["extensions"][ENVIRON_KEY]  # set by `serve`, or fail
        return environ


class WsgiWithWho(asgiref.wsgi.WsgiToAsgi):
    """asgiref's WSGI adapter, handing the app the proxy's `Who` in the environ."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await _WithWho(self.wsgi_application, self.duplicate_header_limit)(scope, receive, send)


async def serve(app: WsgiWithWho, flow: http.HTTPFlow, who: Who) -> None:
    """mitmproxy's asgiapp.serve, with `who` put in the scope for this request alone."""

    async def with_who(scope: Scope, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})[ENVIRON_KEY] = who
        await app(scope, receive, send)

    await asgiapp.serve(with_who, flow)


def environ_who(environ: MutableMapping[str, Any]) -> Who:
    """The `Who` the proxy handed in; nobody when it handed none (fail closed)."""
    found = environ.get(ENVIRON_KEY)
    return found if isinstance(found, Who) else NOBODY


class FormTokens:
    """Mints and checks the portal forms' CSRF tokens, `<issued>.<nonce>.<hmac>`, each for one
    `Who` and one form path. The nonce makes every token its own, so one can be spent once."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._key = secret.encode()
        self.clock = clock

    def _mac(self, who: Who, action: str, issued: int, nonce: str) -> str:
        parts = ("portal-form", who.user or "", who.ip or "", action, str(issued), nonce)
        return hmac.new(self._key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def mint(self, who: Who, action: str) -> str:
        issued, nonce = int(self.clock()), secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._mac(who, action, issued, nonce)}"

    def check(self, token: object, who: Who, action: str) -> bool:
        """True only for a token minted for this very user, address and form, not too old."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
            return False
        issued_text, nonce, mac = token.split(".")
        if not issued_text.isdigit() or len(issued_text) > 12 or not nonce.isascii():
            return False
        issued = int(issued_text)
        age = self.clock() - issued
        if not -60 <= age <= TOKEN_SECONDS:  # a minute's slack between workers' clocks
            return False
        return hmac.compare_digest(mac, self._mac(who, action, issued, nonce))


@functools.cache
def form_tokens(var: Path) -> FormTokens:
    """The tokens of the gateway using `var` (its workers share the secret file)."""
    return FormTokens(ensure_secret(Path(var) / SECRET_FILE))


def current_tokens() -> FormTokens | None:
    """The running gateway's tokens; None if its secret can't be had (forms are refused)."""
    var = getattr(ctx.options, "schoolgate_var", None)
    if not var:
        return None
    try:
        return form_tokens(Path(var).expanduser())
    except OSError as exc:
        logger.error("portal forms can't be signed (their secret in %s): %s", var, exc)
        return None


__all__ = [
    "ENVIRON_KEY",
    "FORM_FIELD",
    "NOBODY",
    "FormTokens",
    "Who",
    "WsgiWithWho",
    "current_tokens",
    "drop_identity_headers",
    "environ_who",
    "form_tokens",
    "is_identity_header",
    "serve",
    "who_of",
]
