"""Daily totals: each finished local day counted once, again on demand, caught up after a
gap, check visits apart, no personal data, and no purge ever losing an uncounted day
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from proxy_addons.record import access_records, access_store, daily_totals
from proxy_addons.record.access_records import AccessRecord
from proxy_addons.record.daily_totals import DAY_TOTALLED, Total
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log
from proxy_addons.store.schema import daily_totals as totals_table
from tests.pg import db_url  # noqa: F401  (a fixture)

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # a Tuesday; today is 10 March
MONDAY = date(2026, 3, 9)


def visit(at: datetime, **fields: object) -> AccessRecord:
    decision: dict[str, object] = {
        "action": "allow",
        "reason": "default",
        "profile": "ks2",
        "identified_by": "user",
        "host": "plain.test",
        "url": "https://plain.test/",
        "user": "amelia.k",
        "ip": "10.0.0.5",
        "stage": "request",
    } | fields
    return access_records.build(decision, at, method="GET")


def blocked(at: datetime, category: str = "social", **fields: object) -> AccessRecord:
    return visit(at, action="block", reason="rule", category=category, **fields)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def counts(store: Store, day: date) -> dict[tuple[str, str, str, str, bool], int]:
    return {
        (t.profile, t.category, t.decision, t.reason, t.check_visit): t.count
        for t in daily_totals.read_totals(store, day, day)
    }


def test_a_day_is_counted_by_profile_category_decision_and_check_apart(store: Store) -> None:
    monday_9am = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    access_store.write_rows(
        store,
        [
            blocked(monday_9am),
            blocked(monday_9am + timedelta(minutes=5), user="ben.t"),
            visit(monday_9am),
            blocked(monday_9am, category="adult", identified_by="check"),  # the gateway's check
            blocked(monday_9am, category="adult", check_probe=True),  # a browser check's probe
            blocked(datetime(2026, 3, 10, 0, 30, tzinfo=UTC)),  # Tuesday: not finished
        ],
    )
    assert daily_totals.total_missing(store, LONDON, NOW) == [MONDAY]
    assert counts(store, MONDAY) == {
        ("ks2", "social", "block", "rule", False): 2,
        ("ks2", "", "allow", "default", False): 1,
        ("ks2", "adult", "block", "rule", True): 2,
    }
    # Nothing that names a person, a device, an address or a site is kept.
    assert {c.name for c in totals_table.columns} == {
        "day", "profile", "category", "decision", "reason", "check_visit", "count",
    }  # fmt: skip
    assert daily_totals.totalled_days(store, MONDAY, MONDAY) == {MONDAY}


def test_days_are_local_days_across_the_clock_change(store: Store) -> None:
    # 29 March 2026: the clocks go forward; 23:30 UTC on the 29th is 00:30 on the 30th.
    access_store.write_rows(
        store,
        [
            blocked(datetime(2026, 3, 28, 23, 30, tzinfo=UTC)),  # 23:30 GMT on the 28th
            blocked(datetime(2026, 3, 29, 23, 30, tzinfo=UTC)),  # 00:30 BST on the 30th
        ],
    )
    daily_totals.total_missing(store, LONDON, datetime(2026, 3, 31, 12, 0, tzinfo=UTC))
    by_day = {
        d: sum(t.count for t in daily_totals.read_totals(store, d, d))
        for d in (date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30))
    }
    assert by_day == {date(2026, 3, 28): 1, date(2026, 3, 29): 0, date(2026, 3, 30): 1}


def test_counting_a_day_again_replaces_it(store: Store) -> None:
    at = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    access_store.write_rows(store, [blocked(at)])
    daily_totals.total_missing(store, LONDON, NOW)
    access_store.write_rows(store, [blocked(at)])  # a record that reached the store late
    # The next run counts the last finished days again (the log still holds all of them).
    assert MONDAY in daily_totals.total_missing(store, LONDON, NOW, retention_days=90)
    assert counts(store, MONDAY) == {("ks2", "social", "block", "rule", False): 2}
    daily_totals.total_days(store, LONDON, [MONDAY, MONDAY])
    assert counts(store, MONDAY) == {("ks2", "social", "block", "rule", False): 2}
    with store.connect() as conn:
        markers = conn.execute(
            sa.select(sa.func.count())
            .select_from(totals_table)
            .where(totals_table.c.reason == DAY_TOTALLED)
        ).scalar_one()
    assert markers == 1


def test_days_missed_while_the_gateway_was_down_are_caught_up(store: Store) -> None:
    first = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    access_store.write_rows(store, [blocked(first)])
    assert daily_totals.total_missing(store, LONDON, first + timedelta(days=1)) == [
        date(2026, 3, 2)
    ]
    access_store.write_rows(store, [blocked(datetime(2026, 3, 6, 9, 0, tzinfo=UTC))])
    done = daily_totals.total_missing(store, LONDON, NOW)  # a week later
    assert done == [date(2026, 3, d) for d in range(3, 10)]  # the quiet days too
    assert daily_totals.totalled_days(store, date(2026, 3, 1), date(2026, 3, 10)) == {
        date(2026, 3, d) for d in range(2, 10)
    }
    assert counts(store, date(2026, 3, 4)) == {}  # quiet: counted, nothing in it


def test_the_purge_counts_days_first_and_never_deletes_an_uncounted_day(store: Store) -> None:
    old = [blocked(datetime(2026, 1, d, 9, 0, tzinfo=UTC)) for d in (5, 6, 7)]
    access_store.write_rows(store, old + [blocked(NOW - timedelta(days=1))])
    rows, _ = access_store.purge(store, None, 30, NOW, timezone=LONDON)
    assert rows == 3
    for d in (5, 6, 7):
        assert counts(store, date(2026, 1, d)) == {("ks2", "social", "block", "rule", False): 1}


def test_the_purge_stops_at_a_day_that_could_not_be_counted(store: Store) -> None:
    access_store.write_rows(
        store, [blocked(datetime(2026, 1, d, 9, 0, tzinfo=UTC)) for d in (5, 6)]
    )
    daily_totals.total_days(store, LONDON, [date(2026, 1, 5)])  # the 6th was never counted
    cutoff = daily_totals.safe_cutoff(store, LONDON, NOW - timedelta(days=30))
    assert cutoff == datetime(2026, 1, 6, 0, 0, tzinfo=UTC)  # midnight GMT
    assert access_store.purge_store(store, cutoff) == 1
    with store.connect() as conn:
        left = conn.execute(sa.select(access_log.c.at)).scalars().all()
    assert left == [datetime(2026, 1, 6, 9, 0, tzinfo=UTC)]


def test_the_job_counts_in_the_policy_s_time_zone(store: Store) -> None:
    class Policy:
        timezone = LONDON

        class monitoring:
            retention_days = 90

    access_store.write_rows(store, [blocked(datetime(2026, 3, 9, 9, 0, tzinfo=UTC))])
    job = daily_totals.totals_job(store, lambda: Policy, clock=lambda: NOW)  # type: ignore[arg-type,return-value]
    job.tick()
    assert daily_totals.read_totals(store, MONDAY, MONDAY) == [
        Total(MONDAY, "ks2", "social", "block", "rule", False, 1)
    ]
