"""The unblock workflow: request, decide, confirm, revoke, extend, expire.

Every step changes the store and appends its audit record in one transaction,
so the trail and the state never disagree; the messages it sends (to the
deciders, the requester, the IT provider) are stored in the alert outbox in that
same transaction, tried at once, and retried by any running gateway until they
arrive (alert_outbox.py). Bad input raises `WorkflowError` with a sentence for
the person and changes nothing.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.events import Route
from proxy_addons.alerts.notify import Notification, Notifier
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
from proxy_addons.pages.blockpage import REFERENCE_ALPHABET
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts, unblocks
from proxy_addons.workflow import audit

logger = logging.getLogger(__name__)

STAFF_ROLES = {"staff", "dsl", "deputy", "it"}


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


def new_unblock_id() -> str:
    return "UB-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


def _row_to_unblock(row: Any) -> Unblock:
    return Unblock(
        id=row.id,
        scope=Scope(row.scope),
        target=row.target,
        audience_kind=AudienceKind(row.audience_kind),
        audience=tuple(row.audience),
        starts_at=_aware(row.starts_at),
        ends_at=_aware(row.ends_at),
        reason=row.reason,
        requested_by=row.requested_by,
        status=Status(row.status),
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class UnblockWorkflow:
    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] | None = None,
        send_in_background: bool = True,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock or (lambda: datetime.now(UTC))
        self.send_in_background = send_in_background
        # Only to store messages and try them once; a gateway's outbox workers retry them.
        self.outbox = AlertOutbox(store, clock=self.clock)
        self.notifier = notifier

    @property
    def notifier(self) -> Notifier | None:
        return self._notifier

    @notifier.setter
    def notifier(self, notifier: Notifier | None) -> None:
        """The channels messages are stored for (the policy's; set again when it changes)."""
        self._notifier = notifier
        self.outbox.notifiers = _channels(notifier)

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
        except ValueError as exc:
            raise WorkflowError(str(exc)) from exc
        self._check_audience(policy, audience_kind, people)
        ends = self._window_end(policy, now, until, minutes)
        illegal = illegal_overlap(policy, scope, canonical)
        if illegal:
            with self.store.begin() as conn:
                audit.append(
                    conn,
                    actor=actor.name,
                    action="unblock.refused",
                    subject="illegal tier",
                    detail={"target": canonical, "scope": scope.value},
                    address=actor.address,
                    at=now,
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
            conn.execute(
                unblocks.insert().values(
                    id=unblock.id,
                    scope=scope.value,
                    target=canonical,
                    audience_kind=audience_kind.value,
                    audience=list(people),
                    starts_at=now,
                    ends_at=ends,
                    reason=unblock.reason,
                    requested_by=actor.name,
                    requested_at=now,
                    requested_from=actor.address,
                    status=Status.PENDING.value,
                )
            )
            audit.append(
                conn,
                actor=actor.name,
                action="unblock.requested",
                subject=unblock.id,
                detail=_describe(unblock),
                address=actor.address,
                at=now,
            )
            queued = self._queue(
                conn,
                "unblock.requested",
                f"Unblock request {unblock.id} from {actor.name}: {canonical}",
                f"{actor.name} asks to unblock {canonical} ({scope.value}) for "
                f"{audience_kind.value} {', '.join(people)} until {_local(policy, ends)}.\n"
                f"Reason: {unblock.reason}\n",
                policy.unblocks.deciders,
                unblock,
            )
        self._send_soon(queued)
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
        ends = self._window_end(policy, current.starts_at, until, None, now=self.clock())
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
        now = self.clock()
        with self.store.connect() as conn:
            rows = conn.execute(
                sa.select(unblocks.c.id).where(
                    unblocks.c.status.in_([s.value for s in _LIVE]), unblocks.c.ends_at <= now
                )
            ).all()
        done = []
        for row in rows:
            with self.store.begin() as conn:
                current = conn.execute(sa.select(unblocks).where(unblocks.c.id == row.id)).one()
                changed = conn.execute(
                    unblocks.update()
                    .where(unblocks.c.id == row.id, unblocks.c.status == current.status)
                    .values(
                        status=Status.EXPIRED.value,
                        ended_at=current.ends_at,
                        version=current.version + 1,
                    )
                ).rowcount
                if changed:
                    audit.append(
                        conn,
                        actor="schoolgate",
                        action="unblock.expired",
                        subject=row.id,
                        detail={
                            "ended_at": _aware(current.ends_at).isoformat(),
                            "was": current.status,
                        },
                        at=now,
                    )
                    done.append(row.id)
        return [self.get(i) for i in done]

    # -- reading ------------------------------------------------------------

    def get(self, unblock_id: str) -> Unblock:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(unblocks).where(unblocks.c.id == unblock_id)).first()
        if row is None:
            raise WorkflowError(f"There is no unblock {unblock_id}.")
        return _row_to_unblock(row)

    def details(self, unblock_id: str) -> dict[str, Any]:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(unblocks).where(unblocks.c.id == unblock_id)).first()
        if row is None:
            raise WorkflowError(f"There is no unblock {unblock_id}.")
        return dict(row._mapping)

    def list(self, statuses: Sequence[Status] = ()) -> list[Unblock]:
        query = sa.select(unblocks).order_by(unblocks.c.requested_at.desc())
        if statuses:
            query = query.where(unblocks.c.status.in_([s.value for s in statuses]))
        with self.store.connect() as conn:
            return [_row_to_unblock(r) for r in conn.execute(query)]

    def in_force(self) -> builtins.list[Unblock]:
        """Active unblocks whose window has not ended (the proxy's working set)."""
        now = self.clock()
        query = sa.select(unblocks).where(
            unblocks.c.status == Status.ACTIVE.value, unblocks.c.ends_at > now
        )
        with self.store.connect() as conn:
            return [_row_to_unblock(r) for r in conn.execute(query)]

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
                detail={k: _jsonable(v) for k, v in {**detail, **values}.items()},
                address=actor.address,
                at=self.clock(),
            )
            if tell is not None:
                now = conn.execute(sa.select(unblocks).where(unblocks.c.id == unblock_id)).one()
                queued = self._tell_outcome(conn, _row_to_unblock(now), *tell)
        self._send_soon(queued)
        return self.get(unblock_id)

    def _check_audience(self, policy: Policy, kind: AudienceKind, people: tuple[str, ...]) -> None:
        if kind is AudienceKind.PROFILE:
            unknown = [p for p in people if p not in policy.profiles]
            if unknown:
                names = ", ".join(sorted(policy.profiles))
                raise WorkflowError(f"No profile called {', '.join(unknown)} (there are: {names}).")
        if kind in (AudienceKind.USER, AudienceKind.USERS):
            known = set(policy.identities.users)
            with self.store.connect() as conn:
                known.update(r.username for r in conn.execute(sa.select(accounts.c.username)))
            unknown = [p for p in people if p not in known]
            if unknown:
                raise WorkflowError(f"Unknown user(s): {', '.join(unknown)}.")

    def _window_end(
        self,
        policy: Policy,
        start: datetime,
        until: datetime | None,
        minutes: int | None,
        now: datetime | None = None,
    ) -> datetime:
        now = now or start
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=policy.timezone)
        if minutes is not None:
            if minutes <= 0:
                raise WorkflowError("The number of minutes must be more than 0.")
            until = now + timedelta(minutes=minutes)
        if until is None:
            until = rest_of_lesson(policy, now)
            if until is None:
                raise WorkflowError(
                    "It is not lesson time now: say until when (a time or minutes)."
                )
        if until <= now:
            raise WorkflowError("That end time has already passed.")
        limit = timedelta(days=policy.unblocks.max_days)
        if until - start > limit:
            raise WorkflowError(f"An unblock can last at most {policy.unblocks.max_days} days.")
        return until.astimezone(UTC)

    def _tell_outcome(
        self, conn: sa.Connection, unblock: Unblock, what: str, comment: str
    ) -> builtins.list[int]:
        policy = self.policy()
        people = {unblock.requested_by, *policy.unblocks.it_provider}
        note = f"\nComment: {comment}" if comment else ""
        return self._queue(
            conn,
            "unblock.decided",
            f"Unblock {unblock.id} {what}: {unblock.target}",
            f"Unblock {unblock.id} for {unblock.target} was {what}. "
            f"It is now {unblock.status.value}, until {_local(policy, unblock.ends_at)}.{note}\n",
            people,
            unblock,
        )

    def _queue(
        self,
        conn: sa.Connection,
        kind: str,
        subject: str,
        text: str,
        people: Any,
        unblock: Unblock,
    ) -> builtins.list[int]:
        """Store the message for each channel in the step's own transaction: it is sent even
        if a channel is down now, or this process ends before it could send."""
        channels = self.outbox.notifiers
        if not channels:
            return []
        policy = self.policy()
        link = f"{policy.unblocks.web_url}/unblocks/{unblock.id}"
        contacts = policy.notifications.contacts
        recipients = tuple(sorted(contacts[p] for p in people if p in contacts))
        note = Notification(
            kind=kind,
            subject=subject,
            text=text + f"\nOpen it: {link}\n",
            recipients=recipients,
            link=link,
            data={**_describe(unblock), "status": unblock.status.value},
        )
        routes = [
            Route(name, recipients if name == "email" else ())
            for name in channels
            if name != "email" or recipients  # nobody to email: the other channels only
        ]
        return self.outbox.enqueue_notification(note, routes, conn=conn)

    def _send_soon(self, ids: builtins.list[int]) -> None:
        """Try the stored messages now; whatever fails stays queued for the retries."""
        if not ids:
            return
        outbox = self.outbox

        def send() -> None:
            try:
                outbox.deliver_now(ids)
            except Exception as exc:  # the store went away: the gateway's workers retry
                logger.error("Unblock messages %s not sent now: %s", ids, exc)

        if self.send_in_background:
            threading.Thread(target=send, daemon=True, name="unblock-notify").start()
        else:
            send()


def _channels(notifier: Notifier | None) -> dict[str, Notifier]:
    """The channels (by name) of a notifier, or of each in a FanOut."""
    if notifier is None:
        return {}
    parts = getattr(notifier, "notifiers", None)
    return {n.name: n for n in parts} if parts is not None else {notifier.name: notifier}


_LIVE = (Status.ACTIVE, Status.AWAITING_IT, Status.PENDING)


def rest_of_lesson(policy: Policy, now: datetime) -> datetime | None:
    """The end of the lesson happening now (school time), or None outside lessons."""
    local = now.astimezone(policy.timezone)
    clock = local.time().replace(tzinfo=None)
    for lesson in policy.unblocks.lessons:
        if lesson.start <= clock < lesson.end:
            end = datetime.combine(local.date(), lesson.end, policy.timezone)
            return end.astimezone(UTC)
    return None


def illegal_overlap(policy: Policy, scope: Scope, target: str) -> str | None:
    """An illegal-tier entry the requested scope would touch, if any."""
    tier = policy.illegal
    entries = [*tier.exact, *(p for p, _ in tier.prefixes)]
    if scope is Scope.DOMAIN:
        for entry in entries:
            host = entry.split("/", 1)[0]
            if host == target or host.endswith("." + target):
                return entry
        return None
    base = target.split("?", 1)[0]
    for entry in entries:
        if entry.startswith(base) or base.startswith(entry.split("?", 1)[0]):
            return entry
    return None


def _describe(unblock: Unblock) -> dict[str, Any]:
    return {
        "id": unblock.id,
        "scope": unblock.scope.value,
        "target": unblock.target,
        "audience_kind": unblock.audience_kind.value,
        "audience": list(unblock.audience),
        "starts_at": unblock.starts_at.isoformat(),
        "ends_at": unblock.ends_at.isoformat(),
        "reason": unblock.reason,
        "requested_by": unblock.requested_by,
    }


def _local(policy: Policy, when: datetime) -> str:
    return when.astimezone(policy.timezone).strftime("%H:%M on %a %d %b %Y")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
