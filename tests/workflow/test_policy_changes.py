"""Filtering changes on both stores: proposed with a reason, refused to their own proposer,
applied on a second person's approval (the files edited, comments kept), a change that
breaks the policy refused with the loader's message, and a stale proposal re-diffed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import Store
from proxy_addons.store.schema import audit_log, policy_changes
from proxy_addons.workflow import audit
from proxy_addons.workflow.accounts import add_account
from proxy_addons.workflow.policy_changes import Change, ChangeError, PolicyChanges
from tests.conftest import ROOT
from tests.pg import db_url  # noqa: F401  (a fixture)

HEALTH = "lists/local/health.txt"


def school(tmp_path: Path, url: str) -> tuple[PolicyChanges, Path]:
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    store = Store.open(url)
    add_account(store, "it.support", "a long password 1", ["it"])
    add_account(store, "mrs.patel", "a long password 2", ["dsl"])
    add_account(store, "mr.brown", "a long password 3", ["staff"])
    path = folder / "school.yaml"
    return PolicyChanges(store, lambda: load_policy(path)), folder


def propose_then_edit(flow: PolicyChanges, folder: Path, written: str) -> Change:
    """A proposal to add healthforkids.co.uk, then `written` added to the file by hand."""
    proposed = flow.propose(
        "it.support",
        {"kind": "list_add", "list": HEALTH, "value": "healthforkids.co.uk"},
        "Health lessons",
    )
    with (folder / HEALTH).open("a") as out:
        out.write(written + "\n")
    return proposed


def test_propose_then_approve_by_another_applies_it(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    before = (folder / HEALTH).read_text()
    proposed = flow.propose(
        "it.support",
        {"kind": "list_add", "list": HEALTH, "value": "https://www.NHS.uk/conditions/"},
        "Pupils research health topics in Year 6 science",
    )
    assert proposed.state == "proposed"
    assert "+www.nhs.uk" in proposed.diff
    assert (folder / HEALTH).read_text() == before  # nothing written before approval
    with pytest.raises(ChangeError, match="Nobody approves their own"):
        flow.approve("it.support", proposed.id)
    with pytest.raises(ChangeError, match="may not approve"):
        flow.approve("mr.brown", proposed.id)
    applied = flow.approve("mrs.patel", proposed.id, "fine for KS2")
    assert (applied.state, applied.decided_by, applied.applied_at is not None) == (
        "applied",
        "mrs.patel",
        True,
    )
    assert (folder / HEALTH).read_text() == before + "www.nhs.uk\n"
    assert before.splitlines()[0] in (folder / HEALTH).read_text()  # its comments kept
    records = [r for r in audit.records(flow.store) if r.subject == f"policy change {proposed.id}"]
    assert [r.action for r in records] == ["policy.change_proposed", "policy.change_applied"]
    assert records[-1].actor == "mrs.patel"
    assert records[-1].detail["proposed_by"] == "it.support"
    assert records[-1].detail["reason"] == "Pupils research health topics in Year 6 science"
    assert "+www.nhs.uk" in records[-1].detail["diff"]
    assert audit.verify(flow.store).ok
    with pytest.raises(ChangeError, match="is applied"):
        flow.approve("mrs.patel", proposed.id)


def test_a_category_change_keeps_the_policy_file_as_written(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    before = (folder / "school.yaml").read_text()
    change = {"kind": "category_add", "profile": "early_years", "rule": 1, "category": "chat"}
    proposed = flow.propose("mrs.patel", change, "Reception children found a chat site")
    flow.approve("it.support", proposed.id)
    after = (folder / "school.yaml").read_text()
    assert after == before.replace("block: [streaming, games]", "block: [streaming, games, chat]")
    rule = load_policy(folder / "school.yaml").profiles["early_years"].rules[0]
    assert "chat" in rule.categories


def test_reason_and_role_are_needed_to_propose(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, _ = school(tmp_path, db_url)
    change = {"kind": "list_add", "list": HEALTH, "value": "healthforkids.co.uk"}
    with pytest.raises(ChangeError, match="reason"):
        flow.propose("it.support", change, "   ")
    with pytest.raises(ChangeError, match="may not propose"):
        flow.propose("mr.brown", change, "I'd like it")
    with pytest.raises(ChangeError, match="not one of the school's own list files"):
        flow.propose("it.support", change | {"list": "../../etc/passwd"}, "why not")
    with pytest.raises(ChangeError, match="not a site"):
        flow.propose("it.support", change | {"value": "not a site/at all"}, "typo")
    with flow.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(policy_changes)).scalar() == 0


def test_a_change_that_breaks_the_policy_is_refused(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    before = (folder / "school.yaml").read_text()
    # Remove the only category of a rule written as a block list: the rule is left empty.
    text = before.replace(
        "      - name: Too much for the youngest\n        block: [streaming, games]",
        "      - name: Too much for the youngest\n        block:\n          - games",
    )
    (folder / "school.yaml").write_text(text)
    change = {"kind": "category_remove", "profile": "early_years", "rule": 1, "category": "games"}
    with pytest.raises(ChangeError, match=r"would break the policy(.|\n)*school.yaml, line"):
        flow.propose("it.support", change, "Games are fine now")
    assert (folder / "school.yaml").read_text() == text
    assert str(tmp_path) in str(folder)  # the message names the real file, not the overlay


def test_a_stale_proposal_is_rediffed_and_asks_again(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    proposed = propose_then_edit(flow, folder, "mind.org.uk")  # someone edits meanwhile
    with pytest.raises(ChangeError, match="changed since change .* approve it again"):
        flow.approve("mrs.patel", proposed.id)
    again = flow.get(proposed.id)
    assert again.state == "proposed" and again.diff != proposed.diff
    assert " mind.org.uk\n+healthforkids.co.uk" in again.diff
    assert "healthforkids" not in (folder / HEALTH).read_text()
    flow.approve("mrs.patel", proposed.id)
    assert (folder / HEALTH).read_text().endswith("mind.org.uk\nhealthforkids.co.uk\n")


def test_a_proposal_overtaken_by_events_fails_with_why(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    proposed = propose_then_edit(flow, folder, "healthforkids.co.uk")
    with pytest.raises(ChangeError, match="already in"):
        flow.approve("mrs.patel", proposed.id)
    assert flow.get(proposed.id).state == "failed"


def test_reject_withdraw_and_history(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, _ = school(tmp_path, db_url)
    one = flow.propose(
        "it.support",
        {"kind": "schedule_times", "schedule": "lunch", "times": ["12:00-13:30"]},
        "Longer lunch",
    )
    two = flow.propose(
        "mrs.patel",
        {"kind": "list_add", "list": HEALTH, "value": "healthforkids.co.uk"},
        "Health week",
    )
    with pytest.raises(ChangeError, match="why"):
        flow.reject("mrs.patel", one.id, "")
    with pytest.raises(ChangeError, match="withdraw"):
        flow.reject("it.support", one.id, "no")
    assert flow.reject("mrs.patel", one.id, "Lunch stays as it is").state == "rejected"
    with pytest.raises(ChangeError, match="Only the person"):
        flow.withdraw("it.support", two.id)
    assert flow.withdraw("mrs.patel", two.id).state == "withdrawn"
    assert [c.id for c in flow.history()] == [two.id, one.id]
    with flow.store.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action)).scalars().all()
    assert "policy.change_rejected" in actions and "policy.change_withdrawn" in actions


def test_only_the_roles_the_policy_names_approve(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    path = folder / "school.yaml"
    path.write_text(path.read_text().replace("approvers: [dsl, it]", "approvers: [headteacher]"))
    add_account(flow.store, "mrs.okafor", "a long password 4", ["headteacher"])
    proposed = flow.propose(
        "it.support", {"kind": "list_add", "list": HEALTH, "value": "mind.org.uk"}, "PSHE"
    )
    with pytest.raises(ChangeError, match=r"may not approve.*headteacher"):
        flow.approve("mrs.patel", proposed.id)
    assert flow.approve("mrs.okafor", proposed.id).state == "applied"
