"""Staff accounts for the admin web app: bcrypt password hashes in the store's `accounts` table.

Sign-in must not tell an attacker which user names exist, so `check_password` costs one bcrypt
check whether or not the account exists or is disabled. bcrypt reads at most 72 bytes; rather
than let it silently ignore the rest of a long passphrase, longer passwords are refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import bcrypt
import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import accounts
from proxy_addons.workflow import sessions as web_sessions

logger = logging.getLogger(__name__)

# headteacher: concerns about staff, incidents, reviews; governor: reads the reports only.
ROLES = frozenset({"staff", "dsl", "deputy", "it", "headteacher", "governor"})
ROUNDS = 12  # about a quarter of a second per check on a current server core
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit

# Directory-style names: letters, digits and . _ @ - (an email address works too).
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,199}")


class AccountError(ValueError):
    """An account can't be added or changed as asked; the message says why."""


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    email: str | None
    roles: frozenset[str]
    created_at: datetime
    disabled: bool
    # Kept for `password_stamp` (sessions end when the password changes); never shown.
    password_hash: str = field(repr=False, compare=False)
    last_sign_in_at: datetime | None = None  # for the access review
    two_factor: bool = False  # a confirmed TOTP secret (workflow/two_factor.py)
    disabled_at: datetime | None = None
    disabled_by: str | None = None

    @property
    def password_stamp(self) -> str:
        """A short digest of the hash: changes whenever the password does."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def normalise_username(username: str) -> str:
    return username.strip().lower()


def _check_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.fullmatch(name):
        raise AccountError(
            f"'{username}' is not a usable user name (letters, digits and . _ @ - only)."
        )
    return name


def _check_roles(roles: Iterable[str]) -> list[str]:
    wanted = sorted({r.strip().lower() for r in roles})
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise AccountError(f"Unknown role(s) {', '.join(unknown)}: use {', '.join(sorted(ROLES))}.")
    return wanted


def hash_password(password: str) -> str:
    raw = password.encode()
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"A password needs at least {MIN_PASSWORD} characters.")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise AccountError(f"A password can be at most {MAX_PASSWORD_BYTES} bytes long.")
    return bcrypt.hashpw(raw, bcrypt.gensalt(ROUNDS)).decode()


@cache
def _dummy_hash() -> bytes:
    """Checked against when there is no usable account, so refusals take as long as checks."""
    return bcrypt.hashpw(b"no account has this password", bcrypt.gensalt(ROUNDS))


def row_to_account(row: Any) -> Account:
    return Account(
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        roles=frozenset(row.roles),
        created_at=row.created_at,
        disabled=bool(row.disabled),
        password_hash=row.password_hash,
        last_sign_in_at=row.last_sign_in_at,
        two_factor=row.totp_enabled_at is not None,
        disabled_at=row.disabled_at,
        disabled_by=row.disabled_by,
    )


def add_account(
    store: Store,
    username: str,
    password: str,
    roles: Iterable[str],
    email: str | None = None,
    display_name: str | None = None,
) -> Account:
    name = _check_username(username)
    role_list = _check_roles(roles)
    password_hash = hash_password(password)
    with store.begin() as conn:
        exists = conn.execute(
            sa.select(accounts.c.username).where(accounts.c.username == name)
        ).first()
        if exists is not None:
            raise AccountError(f"There is already an account '{name}'.")
        conn.execute(
            accounts.insert().values(
                username=name,
                display_name=(display_name or "").strip() or name,
                email=(email or "").strip() or None,
                roles=role_list,
                password_hash=password_hash,
                created_at=datetime.now(UTC),
                disabled=False,
            )
        )
    logger.info("account %s added with roles %s", name, ",".join(role_list) or "(none)")
    account = get_account(store, name)
    assert account is not None
    return account


def get_account(store: Store, username: str) -> Account | None:
    with store.connect() as conn:
        row = conn.execute(
            sa.select(accounts).where(accounts.c.username == normalise_username(username))
        ).first()
    return None if row is None else row_to_account(row)


def _update(store: Store, username: str, *, end_sessions: bool, **values: Any) -> None:
    name = normalise_username(username)
    with store.begin() as conn:
        changed = conn.execute(
            accounts.update().where(accounts.c.username == name).values(**values)
        ).rowcount
        if changed and end_sessions:
            web_sessions.end_all(conn, name)
    if not changed:
        raise AccountError(f"There is no account '{name}'.")


def set_password(store: Store, username: str, password: str) -> None:
    """Change a password; the account's web app sessions end (in the store, and by
    `password_stamp` for any cookie that still names the old one)."""
    _update(store, username, end_sessions=True, password_hash=hash_password(password))
    logger.info("password changed for account %s", normalise_username(username))


def set_disabled(store: Store, username: str, disabled: bool = True) -> None:
    """Disable (or re-enable) an account; a disabled account's sessions end at once."""
    _update(store, username, end_sessions=disabled, disabled=disabled)
    logger.info(
        "account %s %s", normalise_username(username), "disabled" if disabled else "enabled"
    )


def check_password(store: Store, username: str, password: str) -> Account | None:
    """The account, if the password is right and the account is enabled; else None."""
    account = password_matches(store, username, password)
    return account if account is not None and not account.disabled else None


def password_matches(store: Store, username: str, password: str) -> Account | None:
    """The account if the password is right, disabled or not (sign-in then says it is
    disabled: only someone who knows the password learns that); else None."""
    account = get_account(store, username)
    raw = password.encode()
    usable = account is not None and len(raw) <= MAX_PASSWORD_BYTES
    stored = account.password_hash.encode() if usable and account else _dummy_hash()
    try:
        ok = bcrypt.checkpw(raw[:MAX_PASSWORD_BYTES], stored)
    except ValueError:  # a damaged hash in the table: refuse, don't crash the sign-in page
        logger.error("account %s has an unreadable password hash", username)
        ok = False
    return account if ok and usable else None
