"""Edits made straight to the policy files: recorded with their diff as "edited outside the
approval process" and told to the DSL and the IT provider; an approved change is not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.alerts.events import Audience
from proxy_addons.core.policy.load import load_policy
from proxy_addons.store.schema import audit_log, policy_changes
from proxy_addons.workflow.policy_changes import OUTSIDE, Change
from proxy_addons.workflow.policy_outside import outside_edit_events, record_outside_edits
from tests.pg import db_url  # noqa: F401  (a fixture)
from tests.workflow.test_policy_changes import HEALTH, school


def test_an_edit_by_hand_is_recorded_and_told(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    flow, folder = school(tmp_path, db_url)
    var, told = tmp_path / "var", list[Change]()
    policy = load_policy(folder / "school.yaml")
    assert record_outside_edits(flow.store, policy, var, told.append) is None  # the first copy
    proposed = flow.propose(
        "it.support", {"kind": "list_add", "list": HEALTH, "value": "mind.org.uk"}, "PSHE"
    )
    flow.approve("mrs.patel", proposed.id)
    assert record_outside_edits(flow.store, policy, var, told.append) is None  # explained
    text = (folder / "school.yaml").read_text()
    (folder / "school.yaml").write_text(text.replace("block: [streaming, games]", "block: [games]"))
    edited = record_outside_edits(flow.store, load_policy(folder / "school.yaml"), var, told.append)
    assert edited is not None and told == [edited]
    assert (edited.state, edited.proposed_by, edited.outside_process) == ("edited", OUTSIDE, True)
    assert "-        block: [streaming, games]\n+        block: [games]" in edited.diff
    assert "health.txt" not in edited.diff  # the approved change is not part of it
    with flow.store.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.actor)).all()
        rows = conn.execute(sa.select(sa.func.count()).select_from(policy_changes)).scalar()
    assert ("policy.edited_outside", OUTSIDE) in [tuple(a) for a in actions]
    assert rows == 2
    assert record_outside_edits(flow.store, policy, var, told.append) is None  # told once
    events = outside_edit_events(edited, policy)
    assert {e.audience for e in events} == {Audience.SAFEGUARDING, Audience.TECHNICAL}
    assert all(f"history --diff {edited.id}" in e.fields["action"] for e in events)


def test_an_edit_to_the_illegal_tier_is_recorded_by_hash_never_by_address(
    tmp_path: Path,
    db_url: str,  # noqa: F811
) -> None:
    """The tier's entries appear nowhere outside it: neither the kept copy, the diff, the
    audit record nor the notice hold the address added by hand, only its SHA-256."""
    flow, folder = school(tmp_path, db_url)
    var, told = tmp_path / "var", list[Change]()
    policy = load_policy(folder / "school.yaml")
    record_outside_edits(flow.store, policy, var, told.append)
    entry = "http://bad-site.example/found/page.html"
    with (folder / "lists" / "illegal" / "provider-exact.txt").open("a") as out:
        out.write(entry + "\n")
    edited = record_outside_edits(flow.store, load_policy(folder / "school.yaml"), var, told.append)
    assert edited is not None and told == [edited]
    digest = hashlib.sha256(entry.encode()).hexdigest()
    assert f"+sha256:{digest}" in edited.diff and "bad-site" not in edited.diff
    with flow.store.connect() as conn:
        details = [str(d) for d in conn.execute(sa.select(audit_log.c.detail)).scalars()]
    assert not [d for d in details if "bad-site" in d]
    kept = (var / "policy-applied" / "lists" / "illegal" / "provider-exact.txt").read_text()
    assert "bad-site" not in kept and f"sha256:{digest}" in kept
    assert "bad-site" not in str([e.fields for e in outside_edit_events(edited, policy)])
