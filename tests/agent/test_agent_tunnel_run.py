"""The `run` loop with a tunnel: each round keeps it first and puts its state into the report,
reports made while it is down wait in the spool, and a broken keeper never stops reporting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.client import Client, SendResult
from agent.client_cli import run_loop
from agent.report import TunnelState, parse_report

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class Offline(Client):
    """A real Client (its spool) whose gateway can't be reached yet, then can."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, "https://gateway.school.example:8081")
        self.device_id = "dev-1"
        self.reachable = False
        self.delivered: list[dict[str, Any]] = []

    def flush(self) -> SendResult:
        """Deliver the spool in order when reachable (the real flush's part we rely on)."""
        waiting = sorted(self.spool.glob("*.json"))
        if not self.reachable:
            return SendResult(0, 0, len(waiting))
        for path in waiting:
            self.delivered.append(json.loads(path.read_text()))
            path.unlink()
        return SendResult(len(waiting), 0, 0)


def build() -> dict[str, Any]:
    return {
        "schema": 1,
        "device_id": "laptop",
        "hostname": "laptop-7",
        "os_name": "linux",
        "os_version": "6.8",
        "agent_version": "1.0",
        "generated_at": T0.isoformat(),
        "results": [{"id": "firewall", "status": "pass", "reason": "on"}],
    }


def test_reports_carry_the_tunnels_state_and_wait_while_it_is_down(tmp_path: Path) -> None:
    client = Offline(tmp_path)
    states = iter(
        [
            TunnelState("down", "off_site", since=T0, fail_closed=True, reason="no handshake"),
            TunnelState("up", "off_site", since=T0, last_handshake=T0, fail_closed=True),
        ]
    )
    run_loop(client, build, check_every=0, report_every=0, rounds=1, tunnel=lambda: next(states))
    assert client.delivered == [] and len(list(client.spool.glob("*.json"))) == 1
    client.reachable = True
    run_loop(client, build, check_every=0, report_every=0, rounds=1, tunnel=lambda: next(states))
    tunnels = [parse_report(r).tunnel for r in client.delivered]
    assert [t.state if t else None for t in tunnels] == ["down", "up"]  # in order, none lost
    assert tunnels[0] is not None and tunnels[0].since == T0 and tunnels[0].fail_closed


def test_a_keeper_that_fails_never_stops_the_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = Offline(tmp_path)
    client.reachable = True

    def broken() -> TunnelState | None:
        raise RuntimeError("wg-quick vanished")

    run_loop(client, build, check_every=0, report_every=0, rounds=1, tunnel=broken)
    assert len(client.delivered) == 1 and client.delivered[0].get("tunnel") is None
    assert "keeping the tunnel failed" in caplog.text


def test_between_checks_the_tunnel_is_kept_every_few_seconds(tmp_path: Path) -> None:
    """A laptop leaving school mid-check gets its tunnel (and its firewall) within seconds:
    with checks every 5 minutes, the keeper still runs every 15 seconds in between."""
    client = Offline(tmp_path)
    client.reachable = True
    kept: list[int] = []
    slept: list[float] = []
    up = TunnelState("up", "off_site", since=T0, last_handshake=T0)

    def keep() -> TunnelState:
        kept.append(len(slept))
        return up

    run_loop(
        client, build, check_every=300, report_every=3600, rounds=2, sleep=slept.append, tunnel=keep
    )
    assert slept == [15.0] * 20  # the wait between the two rounds, in steps
    assert len(kept) == 2 + 19  # each round, and after each step but the last
    assert len(client.delivered) == 1  # the second round had nothing new to report
