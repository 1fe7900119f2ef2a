"""Filtering changes: proposed with a reason, approved by a second person, applied, attributed.

The schools' policies ask that filtering is "not the sole responsibility of any single
person" and that requests and approvals are logged. So a change to the school's own lists,
a profile's categories or a schedule is proposed by the IT provider or the DSL with a
reason; someone else in a role `changes.approvers` names approves it; it is then checked
(the whole policy loaded as it would be) and written atomically, and the gateway's watched
reload puts it in force within two seconds. Each step is a `policy_changes` row and an
audit record, both with the unified diff. A proposal whose files changed since it was made
is re-diffed against them and has to be approved again: nobody approves a diff they never
saw. (Edits made straight to the files are recorded by policy_outside.py.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import policy_changes
from proxy_addons.workflow import audit
from proxy_addons.workflow.accounts import get_account
from proxy_addons.workflow.policy_edits import (
    KINDS,
    Edit,
    EditError,
    plan,
    text_hash,
    validate,
    write_atomically,
)

OUTSIDE = "edited outside the approval process"
PROPOSERS = frozenset({"dsl", "deputy", "it"})  # who may propose: the IT provider, the DSL's team


class ChangeError(ValueError):
    """A step refused; the message says why, for the person who tried it."""


@dataclass(frozen=True)
class Change:
    id: int
    state: str  # proposed|applied|rejected|withdrawn|failed|edited
    kind: str
    summary: str
    reason: str
    change: dict[str, Any]
    diff: str
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    applied_at: datetime | None
    error: str | None
    outside_process: bool


def roles_of(store: Store, policy: Policy, user: str) -> frozenset[str]:
    """The change roles `user` holds: their account's (an enabled account) and the ones the
    policy names them for."""
    account = get_account(store, user)
    if account is None or account.disabled:
        return frozenset()
    m, u = policy.monitoring, policy.unblocks
    roles = set(account.roles)
    if user in m.safeguarding or user in u.deciders:
        roles.add("dsl")
    if user in m.deputies:
        roles.add("deputy")
    if user in m.technical or user in u.it_provider:
        roles.add("it")
    if user in m.headteacher:
        roles.add("headteacher")
    return frozenset(roles)


def may_propose(store: Store, policy: Policy, user: str) -> bool:
    return bool(roles_of(store, policy, user) & PROPOSERS)


def may_approve(store: Store, policy: Policy, user: str) -> bool:
    return bool(roles_of(store, policy, user) & policy.changes.approvers)


class PolicyChanges:
    """The workflow, on one store and the policy in force (`policy()`: re-read each step)."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- steps ---------------------------------------------------------------------------

    def propose(self, by: str, change: dict[str, Any], reason: str) -> Change:
        policy = self.policy()
        reason = " ".join(reason.split())
        if not reason:
            raise ChangeError("Give the reason for the change: it goes into the record.")
        if not may_propose(self.store, policy, by):
            raise ChangeError(
                f"{by} may not propose filtering changes (the IT provider or the DSL's team)."
            )
        if change.get("kind") not in KINDS:
            raise ChangeError(f"Unknown kind of change: use one of {', '.join(KINDS)}.")
        with self._files_locked(policy):
            edit = self._checked(policy, change)
        now = self.clock()
        with self.store.begin() as conn:
            inserted = conn.execute(
                policy_changes.insert().values(
                    state="proposed",
                    kind=change["kind"],
                    summary=edit.summary[:500],
                    reason=reason[:2000],
                    change=_stored(change, edit),
                    diff=edit.diff,
                    base_hash=edit.base_hash,
                    proposed_by=by,
                    proposed_at=now,
                    outside_process=False,
                )
            ).inserted_primary_key
            cid = int(inserted[0]) if inserted else 0
            self._audit(conn, by, "policy.change_proposed", cid, edit.summary, reason, edit.diff)
        return self.get(int(cid))

    def approve(self, by: str, cid: int, note: str = "") -> Change:
        """Approve and apply at once; ChangeError (nothing written) when refused."""
        policy = self.policy()
        row = self._pending(cid)
        if row.proposed_by == by:
            raise ChangeError("Nobody approves their own change: a second person must.")
        if not may_approve(self.store, policy, by):
            roles = ", ".join(sorted(policy.changes.approvers))
            raise ChangeError(
                f"{by} may not approve filtering changes (the policy names: {roles})."
            )
        with self._files_locked(policy):
            try:
                edit = plan(policy, row.change)
                if edit.base_hash != row.change.get("base_hash"):
                    return self._rediff(row, edit, by)
                validate(policy, edit)
            except EditError as exc:
                self._finish(row, "failed", by, note, error=str(exc))
                raise ChangeError(
                    f"Change {cid} can no longer be made, so it failed: {exc}"
                ) from exc
            now = self.clock()
            with self.store.begin() as conn:
                self._claim(conn, row, "applied", by, note, now)
                for rel, (_, after) in edit.texts.items():
                    write_atomically(policy.path.parent / rel, after)
                applied = {rel: text_hash(after) for rel, (_, after) in edit.texts.items()}
                conn.execute(
                    policy_changes.update()
                    .where(policy_changes.c.id == cid)
                    .values(applied_at=now, change=row.change | {"applied": applied})
                )
                self._audit(
                    conn,
                    by,
                    "policy.change_applied",
                    cid,
                    row.summary,
                    row.reason,
                    row.diff,
                    proposed_by=row.proposed_by,
                    note=note,
                )
        return self.get(cid)

    def reject(self, by: str, cid: int, note: str) -> Change:
        note = " ".join(note.split())
        if not note:
            raise ChangeError("Say why the change is rejected: the proposer reads it.")
        row = self._pending(cid)
        if row.proposed_by == by:
            raise ChangeError("To take back your own proposal, withdraw it.")
        if not may_approve(self.store, self.policy(), by):
            raise ChangeError(f"{by} may not decide filtering changes.")
        return self._finish(row, "rejected", by, note)

    def withdraw(self, by: str, cid: int) -> Change:
        row = self._pending(cid)
        if row.proposed_by != by:
            raise ChangeError("Only the person who proposed a change withdraws it.")
        return self._finish(row, "withdrawn", by, "")

    # -- reading -------------------------------------------------------------------------

    def get(self, cid: int) -> Change:
        return read_change(self.store, cid)

    def history(self, *, state: str | None = None, limit: int = 200) -> list[Change]:
        """Newest first."""
        query = sa.select(policy_changes).order_by(policy_changes.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(policy_changes.c.state == state)
        with self.store.connect() as conn:
            return [_change(r) for r in conn.execute(query)]

    # -- inside ----------------------------------------------------------------------------

    def _checked(self, policy: Policy, change: dict[str, Any]) -> Edit:
        try:
            edit = plan(policy, change)
            validate(policy, edit)
        except EditError as exc:
            raise ChangeError(str(exc)) from exc
        return edit

    def _pending(self, cid: int) -> Change:
        row = self.get(cid)
        if row.state != "proposed":
            raise ChangeError(f"Change {cid} is {row.state}, not waiting for a decision.")
        return row

    def _rediff(self, row: Change, edit: Edit, by: str) -> Change:
        """The files changed since the proposal: show the change as it now would be, and
        ask for a fresh approval."""
        with self.store.begin() as conn:
            conn.execute(
                policy_changes.update()
                .where(policy_changes.c.id == row.id, policy_changes.c.state == "proposed")
                .values(
                    diff=edit.diff,
                    base_hash=edit.base_hash,
                    change=row.change | {"base_hash": edit.base_hash},
                )
            )
            self._audit(
                conn, by, "policy.change_rediffed", row.id, row.summary, row.reason, edit.diff
            )
        raise ChangeError(
            f"The policy files changed since change {row.id} was proposed; it has been "
            "worked out again against them. Look at the new diff and approve it again."
        )

    def _claim(
        self,
        conn: sa.Connection,
        row: Change,
        state: str,
        by: str,
        note: str,
        now: datetime,
        error: str | None = None,
    ) -> None:
        done = conn.execute(
            policy_changes.update()
            .where(policy_changes.c.id == row.id, policy_changes.c.state == "proposed")
            .values(
                state=state, decided_by=by, decided_at=now, decision_note=note or None, error=error
            )
        ).rowcount
        if done != 1:
            raise ChangeError(f"Change {row.id} was decided by someone else meanwhile.")

    def _finish(
        self, row: Change, state: str, by: str, note: str, error: str | None = None
    ) -> Change:
        with self.store.begin() as conn:
            self._claim(conn, row, state, by, note, self.clock(), error)
            self._audit(
                conn,
                by,
                f"policy.change_{state}",
                row.id,
                row.summary,
                row.reason,
                row.diff,
                proposed_by=row.proposed_by,
                note=note or error or "",
            )
        return self.get(row.id)

    def _audit(
        self,
        conn: sa.Connection,
        by: str,
        action: str,
        cid: int,
        summary: str,
        reason: str,
        diff: str,
        **more: str,
    ) -> None:
        detail = {"change": cid, "summary": summary, "reason": reason, "diff": diff}
        detail.update({k: v for k, v in more.items() if v})
        audit.append(conn, actor=by, action=action, subject=f"policy change {cid}", detail=detail)

    @contextlib.contextmanager
    def _files_locked(self, policy: Policy) -> Iterator[None]:
        """One change at a time is worked out and written, across processes (the web app,
        the command line): a lock on the policy's folder."""
        fd = os.open(policy.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def read_change(store: Store, cid: int) -> Change:
    with store.connect() as conn:
        row = conn.execute(sa.select(policy_changes).where(policy_changes.c.id == cid)).first()
    if row is None:
        raise ChangeError(f"There is no change {cid}.")
    return _change(row)


def _stored(change: dict[str, Any], edit: Edit) -> dict[str, Any]:
    fields = ("kind", "list", "value", "profile", "rule", "category", "schedule", "times")
    return {k: change[k] for k in fields if k in change} | {"base_hash": edit.base_hash}


def _change(row: Any) -> Change:
    """A stored proposal (its times come back aware: the store's UTCDateTime)."""
    return Change(
        id=row.id,
        state=row.state,
        kind=row.kind,
        summary=row.summary,
        reason=row.reason,
        change=dict(row.change or {}),
        diff=row.diff,
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_note=row.decision_note,
        applied_at=row.applied_at,
        error=row.error,
        outside_process=bool(row.outside_process),
    )


__all__ = [
    "OUTSIDE",
    "Change",
    "ChangeError",
    "PolicyChanges",
    "may_approve",
    "may_propose",
    "read_change",
    "roles_of",
]
