"""The policy's `devices.thresholds` reach the agent: in the answer to each report, kept in
the agent's state folder, and used to judge its next report (over real HTTPS, real SQLite)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from agent.checks.thresholds import Thresholds
from agent.cli import build_report
from agent.client import Client
from agent.client_cli import run_loop
from agent.runner import FixtureRunner
from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import Store, store_url
from proxy_addons.web.app import create_device_api
from tests.devices.test_device_api import (
    SECRET,
    HttpsServer,
    Pki,
    pkis,  # noqa: F401  (a fixture)
    policy_with_devices,
    report,
)

UBUNTU = Path(__file__).parents[1] / "data" / "agent" / "ubuntu-24.04"  # GNOME locks at 300 s
STRICT = (
    "devices:\n  enrolment_secret_file: enrol.secret\n"
    "  thresholds:\n    screen_lock_minutes: 4\n    password_min_length: 14\n"
)


def test_the_answer_to_a_report_carries_the_policys_thresholds(tmp_path: Path) -> None:
    store = Store.open(store_url(tmp_path / "gw"))
    policy = load_policy(policy_with_devices(tmp_path, STRICT))
    client = create_device_api(store, lambda: policy).test_client()
    enrolled = client.post("/api/v1/enrol", json={"secret": SECRET, "hostname": "lab-pc-07"})
    device_id, token = enrolled.json["device_id"], enrolled.json["token"]  # type: ignore[index]
    answer = client.post(
        "/api/v1/report",
        json=report(device_id, dt.datetime.now(dt.UTC)),
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    store.dispose()
    assert answer.status_code == 202, answer.json
    sent = answer.json["thresholds"]  # type: ignore[index]
    assert sent["idle_lock_max_s"] == 240 and sent["password_min_length"] == 14
    assert sent["security_update_max_days"] == 14 and sent["lockout_max_attempts"] == 10
    assert "eol" not in sent  # the end-of-life table stays on the gateway


def test_the_run_loop_judges_the_next_report_by_the_gateways_thresholds(
    tmp_path: Path,
    pkis: tuple[Pki, Pki],  # noqa: F811
) -> None:
    store = Store.open(store_url(tmp_path / "gw"))
    policy = load_policy(policy_with_devices(tmp_path, STRICT))
    school, _ = pkis
    server = HttpsServer(create_device_api(store, lambda: policy), school)
    server.start()
    try:
        client = Client(tmp_path / "agent", server.url, school.ca)
        client.enrol(SECRET, "lab-pc-07")
        assert client.thresholds() == Thresholds()  # before any answer: the standard's figures
        judged: list[dict[str, str]] = []

        def build() -> dict[str, Any]:
            made = build_report(FixtureRunner(UBUNTU), "linux", client.thresholds())
            judged.append({r.id: r.status for r in made.results})
            return made.to_json()

        run_loop(client, build, check_every=0, report_every=3600, rounds=2, sleep=lambda _: 0)
    finally:
        server.stop()
        store.dispose()
    assert judged[0]["screen_lock"] == "pass"  # 300 s under the default 15 minutes
    assert judged[1]["screen_lock"] == "fail"  # 300 s over the policy's 4 minutes
    kept = json.loads((tmp_path / "agent" / "thresholds.json").read_text())
    assert kept["idle_lock_max_s"] == 240
    assert client.thresholds().password_min_length == 14


def test_an_odd_answer_keeps_the_defaults(tmp_path: Path) -> None:
    client = Client(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    client.save_thresholds({"idle_lock_max_s": "soon", "lockout_max_attempts": 5, "x": 1})
    assert client.thresholds() == Thresholds(lockout_max_attempts=5)
    (tmp_path / "thresholds.json").write_text("not json")
    assert client.thresholds() == Thresholds()
