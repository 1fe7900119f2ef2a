"""The unblock workflow: request, decide, confirm, revoke, extend, expire.

Every step changes the store and appends its audit record in one transaction,
so the trail and the state never disagree; the messages it sends (to the
deciders, the requester, the IT provider; unblock_messages.py) are stored in the
alert outbox in that same transaction, tried at once, and retried by any running
gateway until they arrive. Bad input raises `WorkflowError` with a sentence for
the person and changes nothing. The pure rules (lessons, the illegal tier) are
in unblock_rules.py, what a request may ask for (audience, window) in
unblock_limits.py, the table's reads and expiry in unblock_records.py.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.dispatch import queue_message
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import (
    AudienceKind,
    Scope,
    Status,
    Unblock,
    normalise_audience,
    parse_target,
    scope_problem,
)
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts, unblocks
from proxy_addons.workflow import audit, unblock_records
from proxy_addons.workflow.illegal_unblock import refuse_illegal_unblock
from proxy_addons.workflow.unblock_limits import check_audience, window_end
from proxy_addons.workflow.unblock_messages import (
    account_emails,
    outcome_message,
    request_message,
    send_soon,
)
from proxy_addons.workflow.unblock_rules import (
    STAFF_ROLES,
    describe,
    illegal_overlap,
    jsonable,
    new_unblock_id,
    row_to_unblock,
)

logger = logging.getLogger(__name__)


class WorkflowError(ValueError):
    """A request or decision that can't go ahead; the message says why."""


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where (for the audit trail)."""

    user: str
    address: str | None = None

    @property
    def name(self) -> str:
        return self.user.strip().lower()


class UnblockWorkflow:
    """Every unblock step, for the web app, the CLI, the portal and the gateway alike.
    Messages go to the channels the policy in force configures."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        *,
        clock: Callable[[], datetime] | None = None,
        send_in_background: bool = True,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock or (lambda: datetime.now(UTC))
        self.send_in_background = send_in_background
        # Only to store messages and try them once; a gateway's outbox workers retry them.
        self.outbox = AlertOutbox(store, clock=self.clock)

    # -- who may do what ---------------------------------------------------

    def _roles(self, user: str) -> set[str]:
        with self.store.connect() as conn:
            row = conn.execute(
                sa.select(accounts.c.roles, accounts.c.disabled).where(accounts.c.username == user)
            ).first()
        return set(row.roles) if row is not None and not row.disabled else set()

    def is_staff(self, user: str) -> bool:
        policy = self.policy()
        rules = policy.unblocks
        if user in rules.deciders or user in rules.it_provider:
            return True
        profile = policy.identities.users.get(user)
        if profile and policy.profiles[profile].may_request_unblock:
            return True
        return bool(self._roles(user) & STAFF_ROLES)

    def is_decider(self, user: str) -> bool:
        return user in self.policy().unblocks.deciders

    def is_it_provider(self, user: str) -> bool:
        return user in self.policy().unblocks.it_provider

    # -- steps ---------------------------------------------------------------

    def request(
        self,
        actor: Actor,
        *,
        target: str,
        audience_kind: AudienceKind,
        audience: Sequence[str],
        reason: str,
        scope: Scope | None = None,
        until: datetime | None = None,
        minutes: int | None = None,
    ) -> Unblock:
        policy = self.policy()
        now = self.clock()
        if not self.is_staff(actor.name):
            raise WorkflowError(f"'{actor.user}' is not a member of staff, so cannot ask.")
        if not reason or not reason.strip():
            raise WorkflowError("Give the educational reason for the unblock.")
        try:
            scope, canonical = parse_target(target, scope)
            people = normalise_audience(audience_kind, list(audience))
            check_audience(self.store, policy, audience_kind, people)
            ends = window_end(policy, now, until, minutes)
        except ValueError as exc:
            raise WorkflowError(str(exc)) from exc
        illegal = illegal_overlap(policy, scope, canonical)
        if illegal:
            refuse_illegal_unblock(
                self.store,
                self.outbox,
                policy,
                actor=actor.name,
                address=actor.address,
                scope=scope,
                target=canonical,
                now=now,
            )
            raise WorkflowError(
                "This address is on the illegal-content list (IWF/CTIRU). "
                "Nobody can unblock it, and the request has been recorded."
            )
        unblock = Unblock(
            new_unblock_id(),
            scope,
            canonical,
            audience_kind,
            people,
            now,
            ends,
            reason.strip(),
            actor.name,
            Status.PENDING,
        )
        with self.store.begin() as conn:
            unblock_records.insert_request(conn, unblock, actor.address)
            audit.append(
                conn,
                actor=actor.name,
                action="unblock.requested",
                subject=unblock.id,
                detail=describe(unblock),
                address=actor.address,
                at=now,
            )
            note = request_message(policy, unblock, account_emails(conn))
            queued = queue_message(self.outbox, policy, note, conn=conn)
        send_soon(self.outbox, policy, queued, self.send_in_background)
        return unblock

    def approve(self, actor: Actor, unblock_id: str, comment: str = "") -> Unblock:
        policy = self.policy()
        self._require_decider(actor, unblock_id)
        self._require_one_site(unblock_id, "approved")
        confirm = policy.unblocks.require_it_confirmation
        new_status = Status.AWAITING_IT if confirm else Status.ACTIVE
        unblock = self._transition(
            actor,
            unblock_id,
            {Status.PENDING},
            new_status,
            "unblock.approved",
            {"decided_by": actor.name, "decided_at": self.clock(), "decision_comment": comment},
            {"comment": comment},
            tell=(f"approved by {actor.name}", comment),
        )
        if unblock.status is Status.ACTIVE:
            self._record_applied(unblock)
        return unblock

    def _record_applied(self, unblock: Unblock) -> None:
        with self.store.begin() as conn:
            audit.append(
                conn,
                actor="schoolgate",
                action="unblock.applied",
                subject=unblock.id,
                detail={"ends_at": unblock.ends_at.isoformat()},
                at=self.clock(),
            )

    def reject(self, actor: Actor, unblock_id: str, comment: str) -> Unblock:
        if not comment.strip():
            raise WorkflowError("Say why the request is rejected.")
        self._require_decider(actor, unblock_id)
        unblock = self._transition(
            actor,
            unblock_id,
            {Status.PENDING},
            Status.REJECTED,
            "unblock.rejected",
            {"decided_by": actor.name, "decided_at": self.clock(), "decision_comment": comment},
            {"comment": comment},
            tell=(f"rejected by {actor.name}", comment),
        )
        return unblock

    def confirm(self, actor: Actor, unblock_id: str) -> Unblock:
        if not self.is_it_provider(actor.name):
            raise WorkflowError(f"'{actor.user}' is not the IT provider named in the policy.")
        self._require_one_site(unblock_id, "applied")
        unblock = self._transition(
            actor,
            unblock_id,
            {Status.AWAITING_IT},
            Status.ACTIVE,
            "unblock.applied",
            {"it_confirmed_by": actor.name, "it_confirmed_at": self.clock()},
            {},
            tell=(f"applied by {actor.name}", ""),
        )
        return unblock

    def revoke(self, actor: Actor, unblock_id: str, reason: str) -> Unblock:
        current = self.get(unblock_id)
        allowed = self.is_decider(actor.name) or self.is_it_provider(actor.name)
        if not allowed and actor.name != current.requested_by:
            raise WorkflowError("Only the requester, a DSL/deputy or the IT provider can revoke.")
        unblock = self._transition(
            actor,
            unblock_id,
            {Status.ACTIVE, Status.AWAITING_IT, Status.PENDING},
            Status.REVOKED,
            "unblock.revoked",
            {"ended_by": actor.name, "ended_at": self.clock()},
            {"reason": reason},
            tell=(f"revoked by {actor.name}", reason),
        )
        return unblock

    def extend(self, actor: Actor, unblock_id: str, until: datetime, reason: str) -> Unblock:
        policy = self.policy()
        current = self.get(unblock_id)
        if not self.is_decider(actor.name):
            raise WorkflowError(f"'{actor.user}' may not extend unblocks (not a DSL or deputy).")
        if current.requested_by == actor.name:
            raise WorkflowError("Nobody extends their own unblock: ask another DSL or deputy.")
        if not reason.strip():
            raise WorkflowError("Say why the unblock is extended.")
        self._require_one_site(unblock_id, "extended")
        try:
            ends = window_end(policy, current.starts_at, until, None, now=self.clock())
        except ValueError as exc:
            raise WorkflowError(str(exc)) from exc
        if ends <= current.ends_at:
            raise WorkflowError("An extension must end later than the unblock does now.")
        return self._transition(
            actor,
            unblock_id,
            {Status.ACTIVE, Status.AWAITING_IT, Status.PENDING},
            None,
            "unblock.extended",
            {"ends_at": ends},
            {"reason": reason, "from": current.ends_at.isoformat(), "to": ends.isoformat()},
        )

    def expire_due(self) -> builtins.list[Unblock]:
        """Record every unblock whose window has passed, also ones that ended while down."""
        return [self.get(i) for i in unblock_records.expire_due(self.store, self.clock())]

    # -- reading ------------------------------------------------------------

    def get(self, unblock_id: str) -> Unblock:
        return row_to_unblock(self._stored(unblock_id))

    def details(self, unblock_id: str) -> dict[str, Any]:
        return dict(self._stored(unblock_id)._mapping)

    def list(self, statuses: Sequence[Status] = ()) -> list[Unblock]:
        return unblock_records.listed(self.store, statuses)

    def in_force(self) -> builtins.list[Unblock]:
        """Active unblocks whose window has not ended (the proxy's working set)."""
        return unblock_records.in_force(self.store, self.clock())

    def _stored(self, unblock_id: str) -> Any:
        row = unblock_records.stored(self.store, unblock_id)
        if row is None:
            raise WorkflowError(f"There is no unblock {unblock_id}.")
        return row

    # -- helpers ---------------------------------------------------------------

    def _require_decider(self, actor: Actor, unblock_id: str) -> None:
        current = self.get(unblock_id)
        if not self.is_decider(actor.name):
            raise WorkflowError(f"'{actor.user}' is not a DSL or deputy named in the policy.")
        if current.requested_by == actor.name:
            raise WorkflowError("Nobody decides their own request: another DSL or deputy must.")

    def _require_one_site(self, unblock_id: str, what: str) -> None:
        """Stored requests are checked again: one made before scopes were checked, or edited
        in the store, must not be put in force."""
        current = self.get(unblock_id)
        problem = scope_problem(current.scope, current.target)
        if problem is not None:
            raise WorkflowError(
                f"Unblock {unblock_id} cannot be {what}: {problem}. Reject or revoke it."
            )

    def _transition(
        self,
        actor: Actor,
        unblock_id: str,
        expected: set[Status],
        new_status: Status | None,
        action: str,
        values: dict[str, Any],
        detail: dict[str, Any],
        tell: tuple[str, str] | None = None,  # (what happened, comment) for the people told
    ) -> Unblock:
        queued: builtins.list[int] = []
        policy = self.policy()
        with self.store.begin() as conn:
            row = conn.execute(sa.select(unblocks).where(unblocks.c.id == unblock_id)).first()
            if row is None:
                raise WorkflowError(f"There is no unblock {unblock_id}.")
            if Status(row.status) not in expected:
                raise WorkflowError(f"Unblock {unblock_id} is {row.status} already; nothing done.")
            update = dict(values, version=row.version + 1)
            if new_status is not None:
                update["status"] = new_status.value
            changed = conn.execute(
                unblocks.update()
                .where(unblocks.c.id == unblock_id, unblocks.c.version == row.version)
                .values(**update)
            ).rowcount
            if not changed:
                raise WorkflowError(f"Unblock {unblock_id} was changed by someone else just now.")
            audit.append(
                conn,
                actor=actor.name,
                action=action,
                subject=unblock_id,
                detail={k: jsonable(v) for k, v in {**detail, **values}.items()},
                address=actor.address,
                at=self.clock(),
            )
            if tell is not None:
                now = conn.execute(sa.select(unblocks).where(unblocks.c.id == unblock_id)).one()
                note = outcome_message(
                    policy, row_to_unblock(now), *tell, emails=account_emails(conn)
                )
                queued = queue_message(self.outbox, policy, note, conn=conn)
        send_soon(self.outbox, policy, queued, self.send_in_background)
        return self.get(unblock_id)
