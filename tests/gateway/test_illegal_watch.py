"""The gateway's watch of the illegal tier (gateway/addons/illegal_watch.py), on the real
services (policy runtime and SQLite store): one technical alert when a feed's stored fetch
time passes its limit, none while the state holds, one when it is current again; the
metrics carry its age and fitness without a URL; a newly fetched list is taken by a reload."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy_addons.alerts.events import Audience, Event
from proxy_addons.core.decide import Reason
from proxy_addons.core.illegal_hashes import entry_hash
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.gateway.addons.illegal_watch import (
    ILLEGAL_TIER_FIT,
    ILLEGAL_TIER_UNFIT,
    IllegalTierWatch,
    tier_families,
)
from proxy_addons.gateway.services import Services
from tests.conftest import copy_policy
from tests.core.test_decision import PUPIL, ask

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
LISTED = "https://watched-listed.test/x/"


def _store_fetch(folder: Path, body: bytes, fetched: datetime) -> None:
    (folder / "provider.txt").write_bytes(body)
    state = {
        "fetched_at": fetched.isoformat(),
        "sha256": hashlib.sha256(body).hexdigest(),
        "entries": len(body.splitlines()),
        "format": "hashed",
    }
    (folder / "provider.json").write_text(json.dumps(state))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Services, list[Event], Path]]:
    path = copy_policy(tmp_path)
    folder = tmp_path / "var" / "illegal"
    folder.mkdir(parents=True)
    _store_fetch(folder, (entry_hash("https://other.test/") + "\n").encode(), NOW)
    text = path.read_text()
    old = "illegal:\n  - exact: lists/illegal/exact.txt\n  - prefix: lists/illegal/prefix.txt\n"
    new = (
        "illegal:\n  lists:\n    - exact: lists/illegal/exact.txt\n"
        f"  feeds_folder: {folder}\n"
        "  feeds:\n    - {name: provider, url: 'https://feed.test/l', format: hashed, "
        "max_age_hours: 12}\n"
    )
    path.write_text(text.replace(old, new))
    services = Services()
    services.open(path, tmp_path / "var", "")
    raised: list[Event] = []

    def capture(event: Event) -> bool:
        raised.append(event)
        return True

    services.raise_alert = capture
    try:
        yield services, raised, folder
    finally:
        services.stop()


def test_one_alert_per_state_change(gateway: tuple[Services, list[Event], Path]) -> None:
    services, raised, folder = gateway
    watch = IllegalTierWatch(services, production=True)
    assert watch.check(NOW + timedelta(hours=1)) is not None
    assert raised == []  # current at start: nothing to say

    for hours in (13, 14, 30):
        watch.check(NOW + timedelta(hours=hours))
    assert [e.kind for e in raised] == [ILLEGAL_TIER_UNFIT]
    event = raised[0]
    assert event.audience is Audience.TECHNICAL and event.severity == 5
    assert "feed 'provider' is 13 h old" in event.fields["error"]
    assert "policy allows 12 h" in event.fields["error"]

    _store_fetch(folder, (folder / "provider.txt").read_bytes(), NOW + timedelta(hours=30))
    watch.check(NOW + timedelta(hours=31))
    watch.check(NOW + timedelta(hours=32))
    assert [e.kind for e in raised] == [ILLEGAL_TIER_UNFIT, ILLEGAL_TIER_FIT]


def test_an_alert_the_store_refused_is_raised_at_the_next_check(
    gateway: tuple[Services, list[Event], Path],
) -> None:
    services, raised, _folder = gateway
    services.raise_alert = lambda event: False
    watch = IllegalTierWatch(services, production=True)
    watch.check(NOW + timedelta(hours=13))
    services.raise_alert = lambda event: raised.append(event) is None
    watch.check(NOW + timedelta(hours=14))
    assert [e.kind for e in raised] == [ILLEGAL_TIER_UNFIT]


def test_the_metrics_say_the_age_and_fitness_without_a_url(
    gateway: tuple[Services, list[Event], Path],
) -> None:
    services, _raised, _folder = gateway
    families = {f.name: f for f in tier_families(services.policy, production=True)}
    age = families["schoolgate_illegal_list_age_seconds"].samples[0]
    assert age.labels == {} and age.value > 0
    assert families["schoolgate_illegal_tier_fit"].samples[0].value in (0, 1)
    assert [s.labels for s in families["schoolgate_illegal_tier_fit"].samples] == [{}]


def test_a_newly_fetched_list_is_taken_by_a_reload(
    gateway: tuple[Services, list[Event], Path],
) -> None:
    services, _raised, folder = gateway
    runtime = services.runtime
    assert runtime is not None
    reloaded = threading.Event()
    previous = runtime.on_reload

    def on_reload(loaded: LoadedPolicy) -> None:
        previous(loaded)
        reloaded.set()

    runtime.on_reload = on_reload
    assert services.loaded is not None
    assert ask(services.loaded, LISTED + "page", PUPIL).reason is not Reason.ILLEGAL
    _store_fetch(folder, (entry_hash(LISTED) + "\n").encode(), datetime.now(UTC))
    IllegalTierWatch(services, production=True).check()
    assert reloaded.wait(30)
    assert ask(services.loaded, LISTED + "page", PUPIL).reason is Reason.ILLEGAL
