"""At most one reminder a day for each thing that is due, however many gateways share the
store: the day of the last reminder is kept in `check_reminders` under the thing's key (a
term's name for its filtering check, "annual review" for the review) and claimed in the
same transaction that reads it."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import check_reminders


def claim_day(store: Store, key: str, today: date, now: datetime) -> bool:
    """True if no reminder for `key` went out today; then today is taken (atomically)."""
    t = check_reminders.c
    try:
        with store.begin() as conn:
            row = conn.execute(sa.select(t.last_day).where(t.term == key).with_for_update()).first()
            if row is not None and row.last_day >= today:
                return False
            if row is None:
                conn.execute(check_reminders.insert().values(term=key, last_day=today, sent_at=now))
            else:
                conn.execute(
                    check_reminders.update()
                    .where(t.term == key)
                    .values(last_day=today, sent_at=now)
                )
    except sa.exc.IntegrityError:
        return False  # another gateway took today at the same moment
    return True


__all__ = ["claim_day"]
