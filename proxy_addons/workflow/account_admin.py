"""What the IT provider does to accounts after adding them: list, disable, enable, reset a
password, remove; each step named in the audit trail with who did it.

Disabling ends every session of the account in the same transaction, so a leaver's open
browser is signed out at its next click. The school must never be left without a DSL or an
IT provider who can sign in: removing the last enabled account with either role is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import accounts
from proxy_addons.workflow import audit
from proxy_addons.workflow import sessions as web_sessions
from proxy_addons.workflow.accounts import (
    Account,
    AccountError,
    hash_password,
    normalise_username,
    row_to_account,
)

logger = logging.getLogger(__name__)

KEPT_ROLES = {"dsl": "Designated Safeguarding Lead", "it": "IT provider"}


def list_accounts(store: Store) -> list[Account]:
    """Every account, by user name."""
    with store.connect() as conn:
        rows = conn.execute(sa.select(accounts).order_by(accounts.c.username)).all()
    return [row_to_account(row) for row in rows]


def _change(
    store: Store,
    username: str,
    by: str,
    action: str,
    values: Mapping[str, object],
    *,
    end_sessions: bool,
    address: str | None = None,
) -> int:
    """Change one account and audit it in one transaction; returns sessions ended."""
    name = normalise_username(username)
    actor = by.strip()
    if not actor:
        raise AccountError("Say who is doing this (--as YOUR-NAME): it goes in the audit trail.")
    with store.begin() as conn:
        changed = conn.execute(
            accounts.update().where(accounts.c.username == name).values(**values)
        ).rowcount
        if not changed:
            raise AccountError(f"There is no account '{name}'.")
        ended = web_sessions.end_all(conn, name) if end_sessions else 0
        audit.append(
            conn,
            actor=actor,
            action=action,
            subject=name,
            detail={"sessions_ended": ended},
            address=address,
        )
    logger.info("%s: %s by %s (%d sessions ended)", action, name, actor, ended)
    return ended


def disable(store: Store, username: str, by: str, address: str | None = None) -> int:
    """The account can no longer sign in; its sessions end now. Returns how many ended."""
    values = {"disabled": True, "disabled_at": datetime.now(UTC), "disabled_by": by.strip()}
    return _change(
        store, username, by, "account.disabled", values, end_sessions=True, address=address
    )


def enable(store: Store, username: str, by: str, address: str | None = None) -> None:
    values = {"disabled": False, "disabled_at": None, "disabled_by": None}
    _change(store, username, by, "account.enabled", values, end_sessions=False, address=address)


def reset_password(store: Store, username: str, password: str, by: str) -> int:
    """A new password set by the IT provider; the account's sessions end."""
    values = {"password_hash": hash_password(password)}
    return _change(store, username, by, "account.password_reset", values, end_sessions=True)


def reset_two_factor(store: Store, username: str, by: str) -> int:
    """A lost phone and lost recovery codes: two-factor is off until the person enrols
    again (at their next sign-in, where the policy requires it); sessions end."""
    values = {"totp_secret": None, "totp_enabled_at": None, "recovery_codes": None}
    return _change(store, username, by, "account.two_factor_reset", values, end_sessions=True)


def record_sign_in(store: Store, username: str, at: datetime) -> None:
    with store.begin() as conn:
        conn.execute(
            accounts.update().where(accounts.c.username == username).values(last_sign_in_at=at)
        )


def remove(store: Store, username: str, by: str) -> None:
    """Delete the account (its audit records stay); never the last DSL or IT provider."""
    name = normalise_username(username)
    actor = by.strip()
    if not actor:
        raise AccountError("Say who is doing this (--as YOUR-NAME): it goes in the audit trail.")
    with store.begin() as conn:
        rows = conn.execute(sa.select(accounts)).all()
        found = [row for row in rows if row.username == name]
        if not found:
            raise AccountError(f"There is no account '{name}'.")
        for role, title in KEPT_ROLES.items():
            if role not in found[0].roles:
                continue
            others = [r for r in rows if r.username != name and role in r.roles and not r.disabled]
            if not others:
                raise AccountError(
                    f"{name} is the last enabled {title} account ({role}): add another "
                    "first, or disable this one instead of removing it."
                )
        ended = web_sessions.end_all(conn, name)
        conn.execute(accounts.delete().where(accounts.c.username == name))
        audit.append(
            conn,
            actor=actor,
            action="account.removed",
            subject=name,
            detail={"roles": sorted(found[0].roles), "sessions_ended": ended},
        )
    logger.info("account %s removed by %s", name, actor)


__all__ = [
    "disable",
    "enable",
    "list_accounts",
    "record_sign_in",
    "remove",
    "reset_password",
    "reset_two_factor",
]
