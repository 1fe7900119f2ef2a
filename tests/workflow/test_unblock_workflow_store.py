"""The unblock workflow on both stores (SQLite and PostgreSQL): deciders racing,
bad input changing nothing, and the audit chain staying intact."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind, Status
from proxy_addons.store import Store
from proxy_addons.store.schema import audit_log, unblocks
from proxy_addons.workflow import audit
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow, WorkflowError
from tests.conftest import ROOT
from tests.pg import db_url  # noqa: F401  (a fixture)

POLICY = load_policy(ROOT / "tests/data/policy/school.yaml")


def workflow(url: str) -> UnblockWorkflow:
    return UnblockWorkflow(Store.open(url), lambda: POLICY)


def ask(flow: UnblockWorkflow, by: str = "teacher") -> str:
    return flow.request(
        Actor(by, "10.20.0.9"),
        target="https://chatter.test/unit",
        audience_kind=AudienceKind.PROFILE,
        audience=["ks2"],
        minutes=40,
        reason="debate preparation",
    ).id


def test_two_deciders_approving_at_once_apply_it_once(db_url: str) -> None:  # noqa: F811
    flow = workflow(db_url)
    for _ in range(5):
        uid = ask(flow)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def decide(
            who: str,
            uid: str = uid,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                flow.approve(Actor(who), uid, f"ok from {who}")
                outcomes.append("approved")
            except WorkflowError as exc:
                outcomes.append(str(exc))

        threads = [threading.Thread(target=decide, args=(w,)) for w in ("dsl", "deputy")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("approved") == 1, outcomes
        assert flow.get(uid).status is Status.ACTIVE
        with flow.store.connect() as conn:
            approvals = conn.execute(
                sa.select(sa.func.count())
                .select_from(audit_log)
                .where(audit_log.c.subject == uid, audit_log.c.action == "unblock.approved")
            ).scalar_one()
        assert approvals == 1
    assert audit.verify(flow.store).ok


def test_rejected_input_changes_nothing(db_url: str) -> None:  # noqa: F811
    flow = workflow(db_url)
    bad = [
        dict(target="chatter.test", audience=["nobody"], kind=AudienceKind.USER, reason="x"),
        dict(target="chatter.test", audience=["ks2"], kind=AudienceKind.PROFILE, reason=" "),
        dict(
            target="http://exa mple.com/", audience=["ks2"], kind=AudienceKind.PROFILE, reason="x"
        ),
        dict(target="chatter.test", audience=["ks9"], kind=AudienceKind.PROFILE, reason="x"),
    ]
    for case in bad:
        with pytest.raises(WorkflowError):
            flow.request(
                Actor("teacher"),
                target=case["target"],
                audience_kind=case["kind"],
                audience=case["audience"],
                minutes=10,
                reason=case["reason"],
            )
    with pytest.raises(WorkflowError, match="already passed"):
        flow.request(
            Actor("teacher"),
            target="chatter.test",
            audience_kind=AudienceKind.PROFILE,
            audience=["ks2"],
            until=datetime.now(UTC) - timedelta(minutes=1),
            reason="x",
        )
    with flow.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(unblocks)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() == 0


def test_it_confirmation_when_the_policy_asks_for_it(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    text = (ROOT / "tests/data/policy/school.yaml").read_text()
    copy = tmp_path / "policy"
    copy.mkdir()
    shutil.copytree(ROOT / "tests/data/policy/lists", copy / "lists")
    (copy / "school.yaml").write_text(
        text.replace("  max_days: 7", "  max_days: 7\n  require_it_confirmation: true")
    )
    policy = load_policy(copy / "school.yaml")
    flow = UnblockWorkflow(Store.open(db_url), lambda: policy)
    uid = ask(flow)
    assert flow.approve(Actor("dsl"), uid).status is Status.AWAITING_IT
    assert flow.in_force() == []
    with pytest.raises(WorkflowError, match="IT provider"):
        flow.confirm(Actor("dsl"), uid)
    assert flow.confirm(Actor("tech"), uid).status is Status.ACTIVE
    assert [u.id for u in flow.in_force()] == [uid]
    actions = [r.action for r in audit.records(flow.store) if r.subject == uid]
    assert actions == ["unblock.requested", "unblock.approved", "unblock.applied"]
