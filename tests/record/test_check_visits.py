"""Termly checks' visits are marked in the access log (store row and JSON line) and counted
apart in the metrics: never as a person's decision."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.core.decide import Action, Decision, Reason
from proxy_addons.core.verdict import Verdict
from proxy_addons.record import access_records, access_store, metrics
from proxy_addons.record.access_records import is_check_visit
from proxy_addons.record.access_store import Query
from proxy_addons.record.decision_metrics import DecisionMetrics
from proxy_addons.record.seen import Seen, Took
from proxy_addons.store import Store, store_url

AT = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def verdict(identified_by: str = "user", *, probe: bool = False) -> Verdict:
    decision = Decision(
        Action.BLOCK, Reason.RULE, "visitcheck", identified_by, "adult.test", category="adult"
    )
    return replace(Verdict(decision, "request"), check_probe=probe)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_check_s_visits_are_marked_and_a_person_s_are_not() -> None:
    assert is_check_visit(verdict("check").record)  # the gateway's own check run
    assert is_check_visit(verdict(probe=True).record)  # a browser or agent check's probe
    assert not is_check_visit(verdict().record)


def test_the_access_log_keeps_the_mark_in_the_store_and_the_json(tmp_path: Path) -> None:
    store = Store.open(store_url(tmp_path))
    checked = access_records.build(verdict("check").record, AT, method="GET")
    person = access_records.build(verdict().record, AT, method="GET")
    access_store.write_rows(store, [checked, person])
    found = access_store.search(store, Query())
    assert [r.check_visit for r in found] == [True, False]
    assert json.loads(json.dumps(checked.as_dict()))["check_visit"] is True
    store.dispose()


def test_metrics_count_check_visits_apart_from_decisions() -> None:
    sink = DecisionMetrics()
    seen = Seen(Took.REQUEST, AT, 1)
    labels = {"profile": "visitcheck", "outcome": "block", "stage": "request"}
    decided = {**labels, "category": "adult", "reason": "rule"}
    before = (
        sample("schoolgate_check_visits_total", **labels),
        sample("schoolgate_decisions_total", **decided),
    )
    sink.record(verdict("check"), seen)
    sink.record(verdict(probe=True), seen)
    sink.record(verdict(), seen)
    assert sample("schoolgate_check_visits_total", **labels) == before[0] + 2
    assert sample("schoolgate_decisions_total", **decided) == before[1] + 1
