"""pipeline.settle: decide -> circumvention -> safe search, to one verdict (the gateway's and
`policy explain`'s). The example policy's profiles: learners strict, staff moderate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import pytest

from proxy_addons.core import circumvention as cv
from proxy_addons.core.decide import Decision, Identity, Reason, Request, decide
from proxy_addons.core.hosts import canonical_host
from proxy_addons.core.pipeline import Asked, settle, tunnel_verdict
from proxy_addons.core.policy.model import Action
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.core.verdict import Verdict
from tests.conftest import copy_policy

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LEARNER = Identity(ip="10.10.0.5")  # ks2, by network


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedPolicy:
    tmp = tmp_path_factory.mktemp("pipeline")
    return load_all(copy_policy(tmp), Path(tmp) / "index")


@pytest.fixture
def references() -> Iterator[str]:
    return (f"SG-{n}" for n in count())


def _settle(
    loaded: LoadedPolicy, host: str, asked: Asked, refs: Iterator[str], stage: str = "request"
) -> tuple[Decision, Verdict]:
    request = Request(canonical_host(host), asked.path)
    decision = decide(loaded.policy, loaded.index, LEARNER, request, AT)
    return decision, settle(decision, loaded.policy.profiles, stage, asked, lambda: next(refs))


def test_an_allowed_request_with_nothing_later_is_the_decision_itself(
    loaded: LoadedPolicy, references: Iterator[str]
) -> None:
    decision, verdict = _settle(loaded, "plain.test", Asked("/"), references)
    assert verdict.decision is decision and verdict.reference is None
    assert verdict.record["stage"] == "request"


def test_doh_by_path_blocks_what_decide_allowed_with_a_reference(
    loaded: LoadedPolicy, references: Iterator[str]
) -> None:
    decision, verdict = _settle(loaded, "plain.test", Asked("/dns-query?dns=AAAB"), references)
    assert not decision.blocked
    assert verdict.blocked and verdict.decision.reason is Reason.CIRCUMVENTION
    record = verdict.record
    assert record["circumvention"] == cv.DOH and record["reference"] == "SG-0"
    assert record["profile"] == decision.profile and record["category"] == cv.CATEGORY


def test_a_search_is_rewritten_and_a_host_only_engine_steered(
    loaded: LoadedPolicy, references: Iterator[str]
) -> None:
    _, asked = _settle(loaded, "www.google.com", Asked("/search?q=cats"), references)
    assert asked.rewrite is not None and asked.rewrite.query == "q=cats&safe=active"
    assert asked.safe_search == ("google", "rewritten")
    _, steered = _settle(loaded, "www.google.com", Asked(host_only=True), references, "tls")
    assert steered.steer_to == "forcesafesearch.google.com"
    assert steered.record["enforced"] == "safe_search=strict via forcesafesearch.google.com"
    _, decrypted = _settle(loaded, "www.google.com", Asked(), references, "tls")
    assert decrypted.steer_to is None and decrypted.rewrite is None


def test_an_engine_without_safe_search_is_blocked(
    loaded: LoadedPolicy, references: Iterator[str]
) -> None:
    _, verdict = _settle(loaded, "www.startpage.com", Asked("/"), references)
    assert verdict.blocked and verdict.decision.reason is Reason.SAFE_SEARCH
    assert verdict.safe_search == ("other", "blocked")


def test_a_tunnel_blocks_whoever_was_behind_the_connection() -> None:
    fresh = Decision(Action.ALLOW, Reason.DEFAULT, "ks2", "network", "192.0.2.7", ip="10.10.0.5")
    verdict = tunnel_verdict(fresh, "ssh", frozenset(), lambda: "SG-T")
    assert verdict is not None and verdict.stage == "tunnel" and verdict.reference == "SG-T"
    assert verdict.record["circumvention"] == cv.TUNNEL and verdict.record["ip"] == "10.10.0.5"
    assert tunnel_verdict(fresh, "ssh", frozenset({cv.TUNNEL}), lambda: "SG-T") is None
