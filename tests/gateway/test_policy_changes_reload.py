"""The gateway and filtering changes: an approved change is in force within 2 s through the
watched reload (and not recorded as an outside edit); an edit by hand is recorded with its
diff, "edited outside the approval process", and told to the DSL and the IT provider."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.alerts.events import Audience, Event
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.gateway.services import Services
from proxy_addons.workflow.accounts import add_account
from proxy_addons.workflow.policy_changes import OUTSIDE, PolicyChanges
from proxy_addons.workflow.policy_outside import EDITED_OUTSIDE
from tests.conftest import copy_policy
from tests.core.test_decision import PUPIL, ask

NEW_SITE = "https://newchat.test/"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Services, list[Event], threading.Event, Path]]:
    path = copy_policy(tmp_path)
    services = Services()
    services.open(path, tmp_path / "var", "")
    raised: list[Event] = []
    services.raise_alert = lambda event: raised.append(event) is None
    reloaded = threading.Event()
    runtime = services.runtime
    assert runtime is not None
    previous = runtime.on_reload

    def on_reload(loaded: LoadedPolicy) -> None:
        if previous is not None:
            previous(loaded)
        reloaded.set()

    runtime.on_reload = on_reload
    runtime.watch()
    try:
        yield services, raised, reloaded, path
    finally:
        runtime.stop_watching()
        services.stop()


def test_approved_in_force_within_two_seconds_an_edit_by_hand_told(
    gateway: tuple[Services, list[Event], threading.Event, Path],
) -> None:
    services, raised, reloaded, path = gateway
    assert services.store is not None and services.loaded is not None
    add_account(services.store, "tech", "a long password 1", ["it"])
    add_account(services.store, "dsl", "a long password 2", ["dsl"])
    flow = PolicyChanges(services.store, lambda: load_policy(path))
    assert ask(services.loaded, NEW_SITE, PUPIL).category != "social"
    change = {"kind": "list_add", "list": "lists/social.txt", "value": "newchat.test"}
    proposed = flow.propose("tech", change, "A chat site pupils found")
    flow.approve("dsl", proposed.id)
    approved_at = time.monotonic()
    while ask(services.loaded, NEW_SITE, PUPIL).category != "social":
        assert time.monotonic() - approved_at < 2.0, "the approved change is not in force in 2 s"
        time.sleep(0.05)
    assert [c.state for c in flow.history()] == ["applied"]  # no outside edit recorded
    assert raised == []
    reloaded.clear()
    with (path.parent / "lists/social.txt").open("a") as out:
        out.write("another.test\n")
    assert reloaded.wait(10)
    edited = flow.history()[0]
    assert (edited.state, edited.proposed_by) == ("edited", OUTSIDE)
    assert "+another.test" in edited.diff and "newchat" not in edited.diff.replace(" newchat", "")
    assert {e.audience for e in raised if e.kind == EDITED_OUTSIDE} == {
        Audience.SAFEGUARDING,
        Audience.TECHNICAL,
    }
