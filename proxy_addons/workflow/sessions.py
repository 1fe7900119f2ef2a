"""Admin web app sessions kept in the store, so that signing out really ends them.

Flask's signed cookie can't be taken back: a copy made before `/logout` would work until it
expires. So the cookie carries a random session id and the store keeps its SHA-256 (a stolen
database holds no usable id); every request looks the id up. Signing out deletes the row,
a new password deletes all of the account's rows, and expired rows go at the next sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import web_sessions

MAX_ID = 100  # longer cookie values are not ours: not looked up at all


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(store: Store, username: str, now: datetime, lifetime: timedelta) -> str:
    """A new session for `username`; returns the id for the cookie (never stored as is)."""
    session_id = secrets.token_urlsafe(32)
    with store.begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now))
        conn.execute(
            web_sessions.insert().values(
                id_hash=_hash(session_id),
                username=username,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return session_id


def user_of(store: Store, session_id: object, now: datetime) -> str | None:
    """The account a live session belongs to; None if ended, expired or unknown."""
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_ID:
        return None
    with store.connect() as conn:
        row = conn.execute(
            sa.select(web_sessions.c.username, web_sessions.c.expires_at).where(
                web_sessions.c.id_hash == _hash(session_id)
            )
        ).first()
    if row is None or row.expires_at <= now:
        return None
    return str(row.username)


def end(store: Store, session_id: object) -> None:
    """Sign-out: the session's id stops working everywhere at once."""
    if isinstance(session_id, str) and 0 < len(session_id) <= MAX_ID:
        with store.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.id_hash == _hash(session_id)))


def end_all(conn: sa.Connection, username: str) -> int:
    """Every session of an account (a new password, a disabled account), in `conn`'s
    transaction; returns how many there were."""
    done = conn.execute(web_sessions.delete().where(web_sessions.c.username == username))
    return int(done.rowcount or 0)


__all__ = ["end", "end_all", "start", "user_of"]
