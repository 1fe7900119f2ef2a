"""The portal's acting posts: sent from a portal page, with its token, once.

A block page is served on the blocked site's own origin (http://mixed.test/adult is blocked
while http://mixed.test/ is allowed), so whatever it holds, script on that site can read, and
whatever form it posts, script there can post too. So nothing a block page sends acts by
itself: its forms post to the portal, which shows what was sent on a confirmation page on its
own origin, with a token minted for that person and form (portal_identity.FormTokens). Only a
post with that token, from a page of the portal itself (its Origin, or its Referer when a
browser sends no Origin), acts; and a token acts once, remembered in the store so every
worker knows (a double click, a resent form, a copied token).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa

from proxy_addons.gateway.portal_identity import TOKEN_SECONDS
from proxy_addons.store import Store
from proxy_addons.store.schema import portal_form_uses

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
# A spent token's row outlives the token (and the workers' minute of clock slack).
KEEP_SPENT = timedelta(seconds=TOKEN_SECONDS + 120)


def from_portal(origins: list[str], referers: list[str], host: str) -> bool:
    """True when the browser says the post came from a page of the portal itself: one Origin
    naming it, or, only when there is no Origin at all, one Referer on it. `Origin: null`, two
    of either, another site, another port or a look-alike name are not the portal."""
    if origins:
        return len(origins) == 1 and _names_portal(origins[0], host, whole_url=False)
    return len(referers) == 1 and _names_portal(referers[0], host, whole_url=True)


def _names_portal(value: str, host: str, *, whole_url: bool) -> bool:
    if not value.isascii() or not value.isprintable() or " " in value:
        return False  # urlsplit would quietly drop tabs and newlines from the name
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS:
        return False
    wanted = host.lower()
    netlocs = (wanted, f"{wanted}:{DEFAULT_PORTS[parts.scheme]}")
    if not whole_url:  # an origin is exactly scheme://host[:port] ('#' or '?' alone too)
        return value.lower() in {f"{parts.scheme}://{n}" for n in netlocs}
    return parts.netloc.lower() in netlocs


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def spend(store: Store, token: str, now: datetime) -> bool:
    """Mark `token` as having acted; False when it already had (here or in another worker)."""
    try:
        with store.begin() as conn:
            stale = portal_form_uses.c.used_at < now - KEEP_SPENT
            conn.execute(portal_form_uses.delete().where(stale))
            conn.execute(portal_form_uses.insert().values(token_hash=_key(token), used_at=now))
    except sa.exc.IntegrityError:
        return False
    return True


def release(store: Store, token: str) -> None:
    """Give `token` back when its post did not act after all (refused, or failed on the way),
    so sending the page again is tried again rather than called already sent."""
    with store.begin() as conn:
        conn.execute(portal_form_uses.delete().where(portal_form_uses.c.token_hash == _key(token)))


@contextlib.contextmanager
def giving_back(store: Store, token: str | None) -> Iterator[None]:
    """Around the action a spent token allowed: if the action raises, the token is released."""
    try:
        yield
    except BaseException:
        if token:
            try:
                release(store, token)
            except sa.exc.SQLAlchemyError as exc:  # the action's own error matters more
                logger.error("portal: a form token could not be given back: %s", exc)
        raise


__all__ = ["from_portal", "giving_back", "release", "spend"]
