"""How the admin app slows password guessing without locking the real user out."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from flask import request
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.wrappers import Response as WerkzeugResponse

from proxy_addons.workflow.throttle import FailureCounter, address_key


class LoginThrottle:
    """Slows password guessing without locking the real user out.

    Per 15 minutes: 5 tries at one user name from one client, 20 from one client at any
    names (one password tried on many accounts), where a client is its IPv4 address or its
    IPv6 /64 (throttle.address_key: a host can use any address in its /64). And 10 tries at
    one account from anywhere, so spreading guesses over many addresses gains nothing; a
    browser that account has signed in on before (a signed cookie) is not held back by
    others' failures, so the real user still gets in while someone else guesses.
    """

    def __init__(self, window: float = 15 * 60, clock: Callable[[], float] = time.monotonic):
        self.by_name_here = FailureCounter(5, window, clock=clock)
        self.by_client = FailureCounter(20, window, clock=clock)
        self.by_account = FailureCounter(10, window, clock=clock)

    def refusal(self, user: str, address: str | None, known_browser: bool) -> str | None:
        """Why this attempt is not even checked, in words for the person; None if it may be."""
        client = address_key(address)
        if self.by_name_here.blocked((user, client)) or self.by_client.blocked(client):
            return "Too many failed sign-ins. Wait a few minutes and try again."
        if not known_browser and self.by_account.blocked(user):
            return (
                "Too many failed sign-ins to this account from other computers. Sign in on a "
                "computer you have signed in on before, or wait 15 minutes and try again. "
                "If this keeps happening, tell the IT provider."
            )
        return None

    def failed(self, user: str, address: str | None) -> None:
        client = address_key(address)
        self.by_name_here.failed((user, client))
        self.by_client.failed(client)
        self.by_account.failed(user)

    def succeeded(self, user: str, address: str | None) -> None:
        # Only this client's count for this name: the others count what someone else tried.
        self.by_name_here.succeeded((user, address_key(address)))


class KnownBrowsers:
    """A signed cookie saying "this account signed in on this browser", for LoginThrottle."""

    LIFETIME = timedelta(days=120)

    def __init__(self, secret_key: bytes, secure_cookies: bool) -> None:
        self._signer = URLSafeTimedSerializer(secret_key, salt="schoolgate-known-browser")
        self.cookie = "__Host-schoolgate-known" if secure_cookies else "schoolgate-known"
        self.secure = secure_cookies

    def knows(self, user: str) -> bool:
        value = request.cookies.get(self.cookie)
        if not value or len(value) > 500:
            return False
        try:
            found = self._signer.loads(value, max_age=int(self.LIFETIME.total_seconds()))
        except BadData:
            return False
        return bool(found == user)

    def remember(self, response: WerkzeugResponse, user: str) -> None:
        response.set_cookie(
            self.cookie,
            self._signer.dumps(user),
            max_age=int(self.LIFETIME.total_seconds()),
            secure=self.secure,
            httponly=True,
            samesite="Lax",
            path="/",
        )


__all__ = ["KnownBrowsers", "LoginThrottle"]
