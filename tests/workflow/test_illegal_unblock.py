"""Illegal-tier URLs never in plain text outside the tier: a staff request to unblock one is
refused, recorded in the audit trail (and its exports) as a hash and a reference, and the
DSL gets a safeguarding alert naming who asked, not the address; on SQLite and PostgreSQL.
The access log (file, store and exports) names an illegal-tier block by its hash too."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from proxy_addons.core.illegal_hashes import illegal_reference
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind
from proxy_addons.record import access_export, access_records
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox, alerts, unblocks
from proxy_addons.workflow import audit
from proxy_addons.workflow.illegal_unblock import ILLEGAL_UNBLOCK_ASKED
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow, WorkflowError
from tests.conftest import ROOT
from tests.pg import db_url  # noqa: F401  (a fixture)

POLICY = load_policy(ROOT / "tests/data/policy/school.yaml")
SPELLINGS = ["http://illegal.test/exact.html", "https://ILLEGAL.test/prefix/a/b.jpg"]


@pytest.mark.parametrize("target", SPELLINGS)
def test_an_illegal_unblock_request_is_recorded_by_hash_and_the_dsl_told(
    db_url: str,  # noqa: F811
    target: str,
) -> None:
    flow = UnblockWorkflow(Store.open(db_url), lambda: POLICY, send_in_background=False)
    with pytest.raises(WorkflowError, match="illegal-content list"):
        flow.request(
            Actor("teacher", "10.20.0.9"),
            target=target,
            audience_kind=AudienceKind.PROFILE,
            audience=["ks2"],
            minutes=40,
            reason="research",
        )
    exports = [audit.export(flow.store, None, None, f) for f in ("csv", "json")]
    with flow.store.connect() as conn:
        raised = conn.execute(sa.select(alerts)).all()
        requests = conn.execute(sa.select(unblocks)).all()
        outbox = conn.execute(sa.select(alert_outbox)).all()
    assert requests == []  # nothing pending names it either
    [record] = [r for r in audit.records(flow.store, None, None) if r.action == "unblock.refused"]
    assert record.detail["target"].startswith("sha256:") and len(record.detail["target"]) == 71
    assert record.detail["reference"].startswith("IU-")
    [alert] = raised
    # Raised to the safeguarding audience; about a member of staff, routing.py makes it a
    # "staff" alert: the headteacher, else the DSL and deputies, never the person it is about.
    assert (alert.kind, alert.audience, alert.severity) == (ILLEGAL_UNBLOCK_ASKED, "staff", 5)
    # (Sent on the policy's channels; this test policy has none, so it waits in the console.)
    assert alert.username == "teacher" and alert.state == "new"
    assert alert.event["fields"]["user"] == "teacher"
    assert alert.event["fields"]["reference"] == record.detail["reference"]
    sent = [json.dumps(o.event) for o in outbox]
    everything = " ".join([*exports, *sent, json.dumps(alert.event), alert.summary]).lower()
    assert "exact.html" not in everything and "prefix/a" not in everything
    assert "illegal.test" not in everything
    assert audit.verify(flow.store).ok


def test_an_illegal_block_is_logged_and_exported_by_its_hash() -> None:
    decision = {
        "action": "block",
        "reason": "illegal",
        "host": "illegal.test",
        "url": "https://illegal.test/prefix/a.jpg?q=cats",
        "entry": "illegal.test/prefix/",
        "list_source": "/etc/schoolgate/lists/illegal/prefix.txt",
        "profile": "ks2",
        "user": "pupil",
    }
    record = access_records.build(decision, datetime(2026, 11, 25, 10, tzinfo=UTC))
    assert record.url == illegal_reference("https://illegal.test/prefix/a.jpg?q=cats")
    assert record.entry == illegal_reference("illegal.test/prefix/")
    assert record.search_term is None
    for text in (access_export.to_csv([record]), access_export.to_json([record])):
        assert "prefix/a.jpg" not in text and "cats" not in text and "prefix/" not in text
    # The same URL spelt differently has the same reference: the DSL can tie records together.
    assert illegal_reference("HTTPS://illegal.test/prefix/./a.jpg?q=cats") == record.url
