"""Two-factor sign-in for the admin app: an account's TOTP secret, its confirmation by a
first code, and the codes that prove the second factor at each sign-in.

The `totp_secret` column holds the base32 secret and, once a code has been accepted, the
last time step used ("SECRET:STEP"): an accepted code, or any earlier one, is refused after
that, in every web process at once, and the step is moved on with a compare-and-set so two
sign-ins racing with one code can't both win. Recovery codes are kept as SHA-256 digests;
one used is struck off. Every change is in the audit trail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts
from proxy_addons.workflow import audit, totp
from proxy_addons.workflow.accounts import Account, AccountError, normalise_username

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSecret:
    secret: str
    last_step: int | None

    @classmethod
    def parse(cls, value: str) -> StoredSecret:
        secret, _, step = value.partition(":")
        return cls(secret, int(step) if step.isdigit() else None)

    def text(self) -> str:
        return self.secret if self.last_step is None else f"{self.secret}:{self.last_step}"


def _row(conn: sa.Connection, name: str, *, lock: bool = False) -> sa.Row[tuple[object, ...]]:
    """The account's row; `lock`: held until the transaction ends (PostgreSQL; SQLite's
    write transactions are one at a time anyway), so two sign-ins can't both strike off
    one recovery code."""
    query = sa.select(accounts).where(accounts.c.username == name)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise AccountError(f"There is no account '{name}'.")
    return row


def roles_held(policy: Policy, account: Account) -> frozenset[str]:
    """The account's roles and those the policy gives its user by name (the DSL named in
    monitoring.safeguarding, a decider, the IT provider...)."""
    m, u, user = policy.monitoring, policy.unblocks, account.username
    named = {
        "dsl": user in m.safeguarding,
        "deputy": user in m.deputies or user in u.deciders,
        "it": user in m.technical or user in u.it_provider,
        "headteacher": user in m.headteacher,
        "governor": user in m.chair_of_governors,
    }
    return account.roles | {role for role, held in named.items() if held}


def required_for(policy: Policy, account: Account) -> bool:
    """Must this account sign in with a code (`authentication.require_2fa_for`)?"""
    return bool(policy.authentication.require_2fa_for & roles_held(policy, account))


def begin_enrolment(store: Store, username: str) -> str:
    """A new secret for the person to add to their app; not in force until a first code
    from it is confirmed. An account with two-factor on keeps its secret."""
    name = normalise_username(username)
    secret = totp.new_secret()
    with store.begin() as conn:
        if _row(conn, name).totp_enabled_at is not None:
            raise AccountError("Two-factor sign-in is already on for this account.")
        conn.execute(
            accounts.update().where(accounts.c.username == name).values(totp_secret=secret)
        )
    return secret


def pending_secret(store: Store, username: str) -> str | None:
    """The secret being enrolled (not yet confirmed), if any."""
    with store.connect() as conn:
        row = _row(conn, normalise_username(username))
    if row.totp_enabled_at is not None or not row.totp_secret:
        return None
    return StoredSecret.parse(row.totp_secret).secret


def confirm_enrolment(
    store: Store, username: str, code: str, now: datetime, address: str | None = None
) -> list[str] | None:
    """Turn two-factor on if `code` comes from the pending secret; returns the recovery
    codes (to show once), or None if the code is wrong."""
    name = normalise_username(username)
    codes = totp.new_recovery_codes()
    with store.begin() as conn:
        row = _row(conn, name)
        if row.totp_enabled_at is not None or not row.totp_secret:
            return None
        stored = StoredSecret.parse(row.totp_secret)
        step = totp.matching_step(stored.secret, code, now.timestamp(), None)
        if step is None:
            return None
        conn.execute(
            accounts.update()
            .where(accounts.c.username == name)
            .values(
                totp_secret=StoredSecret(stored.secret, step).text(),
                totp_enabled_at=now,
                recovery_codes=[totp.recovery_digest(c) for c in codes],
            )
        )
        audit.append(
            conn, actor=name, action="account.two_factor_enabled", subject=name,
            detail={"recovery_codes": len(codes)}, address=address, at=now,
        )  # fmt: skip
    logger.info("two-factor sign-in turned on for %s", name)
    return codes


def check_code(store: Store, username: str, code: str, now: datetime) -> str | None:
    """Prove the second factor: "code" for an app's code not used before, "recovery" for an
    unused recovery code (struck off); None otherwise."""
    name = normalise_username(username)
    typed = code.strip()
    if not typed or len(typed) > 40:
        return None
    with store.begin() as conn:
        row = _row(conn, name, lock=True)
        if row.totp_enabled_at is None or not row.totp_secret:
            return None
        stored = StoredSecret.parse(row.totp_secret)
        step = totp.matching_step(stored.secret, typed, now.timestamp(), stored.last_step)
        if step is not None:
            moved = conn.execute(
                accounts.update()
                .where(accounts.c.username == name, accounts.c.totp_secret == row.totp_secret)
                .values(totp_secret=StoredSecret(stored.secret, step).text())
            ).rowcount
            return "code" if moved else None
        digest = totp.recovery_digest(typed)
        left = list(row.recovery_codes or [])
        if digest not in left:
            return None
        left.remove(digest)
        conn.execute(
            accounts.update().where(accounts.c.username == name).values(recovery_codes=left)
        )
        audit.append(
            conn, actor=name, action="account.recovery_code_used", subject=name,
            detail={"recovery_codes_left": len(left)}, at=now,
        )  # fmt: skip
    logger.warning("%s signed in with a recovery code (%d left)", name, len(left))
    return "recovery"


def recovery_codes_left(store: Store, username: str) -> int:
    with store.connect() as conn:
        row = _row(conn, normalise_username(username))
    return len(row.recovery_codes or [])


__all__ = [
    "begin_enrolment",
    "check_code",
    "confirm_enrolment",
    "pending_secret",
    "recovery_codes_left",
    "required_for",
    "roles_held",
]
