"""Times typed on the command line (one parser: core/typed_time.py), and `policy explain`
taking the unblocks in force into account, as the gateway does. In-process `main`, the
example policy, a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addons.cli.main import main
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind, Scope
from proxy_addons.store import Store, store_url
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow
from tests.conftest import ROOT

EXAMPLE = ROOT / "policies" / "school.yaml"
FACEBOOK = "https://www.facebook.com/"
PUPIL_PC = "10.10.3.7"  # ks2 by network in the example


def explain(var: Path, *args: str) -> list[str]:
    return ["policy", "explain", FACEBOOK, "--policy", str(EXAMPLE), "--var", str(var), *args]


@pytest.fixture(scope="module")
def var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one unblock in force: Facebook for KS2 for an hour, approved by the DSL."""
    folder = tmp_path_factory.mktemp("var")
    store = Store.open(store_url(folder))
    policy = load_policy(EXAMPLE)
    flow = UnblockWorkflow(store, lambda: policy, send_in_background=False)
    asked = flow.request(
        Actor("mr.jones", "cli"),
        target="www.facebook.com",
        scope=Scope.DOMAIN,
        audience_kind=AudienceKind.PROFILE,
        audience=["ks2"],
        reason="Year 6: spotting fake profiles",
        minutes=60,
    )
    flow.approve(Actor("mrs.patel", "cli"), asked.id, "fine for this lesson")
    store.dispose()
    (folder / "unblock-id").write_text(asked.id)
    return folder


def test_explain_applies_the_unblock_in_force(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unblock_id = (var / "unblock-id").read_text()
    assert main(explain(var, "--ip", PUPIL_PC)) == 0
    out, _ = capsys.readouterr()
    assert f"unblocks:  1 in force ({unblock_id})" in out
    assert "decision:  ALLOW (unblock)" in out
    assert f"unblock {unblock_id} (until" in out
    # Without it, as the README's example: blocked by the rule.
    assert main(explain(var, "--ip", PUPIL_PC, "--without-unblocks")) == 3
    out, _ = capsys.readouterr()
    assert "unblocks:  left out (--without-unblocks)" in out and "BLOCK (rule)" in out
    # Tomorrow the hour is over; staff were never in its audience.
    assert main(explain(var, "--ip", PUPIL_PC, "--at", "tomorrow 10:00")) == 3
    assert main(explain(var, "--ip", "10.11.0.5")) == 3  # early years: not in the audience
    capsys.readouterr()


def test_explain_without_a_store_says_it_read_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(explain(tmp_path, "--ip", PUPIL_PC)) == 3
    out, _ = capsys.readouterr()
    assert f"unblocks:  none read: no store at {tmp_path / 'schoolgate.db'}" in out
    assert not (tmp_path / "schoolgate.db").exists()  # explain made no store


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--at", "25/11/2026"], "--at"),
        (["--at", "half past two"], "--at"),
    ],
)
def test_explain_names_the_option_for_a_time_it_cant_read(
    var: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    assert main(explain(var, "--ip", PUPIL_PC, *argv)) == 1
    _, err = capsys.readouterr()
    assert f"{option}: '{argv[1]}' is not a date or time; write today, yesterday" in err


def test_log_and_audit_take_what_people_type(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_args = ["--policy", str(EXAMPLE), "--var", str(var)]
    assert main(["log", "search", "--from", "yesterday", "--to", "today", *store_args]) == 0
    capsys.readouterr()
    assert main(["audit", "export", "--from", "today", "--format", "json", *store_args]) == 0
    out, _ = capsys.readouterr()
    assert "unblock.approved" in out  # today's approval is in today's export
    assert main(["audit", "export", "--to", "yesterday", "--format", "json", *store_args]) == 0
    out, _ = capsys.readouterr()
    assert "unblock.approved" not in out
    assert main(["log", "search", "--to", "14h30", *store_args]) == 1
    _, err = capsys.readouterr()
    assert "--to: '14h30' is not a date or time" in err
    assert main(["audit", "export", "--from", "01/11", *store_args]) == 1
    _, err = capsys.readouterr()
    assert "--from: '01/11' is not a date or time" in err
