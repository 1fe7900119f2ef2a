"""Unblock workflows against the running gateway: request, approve, the page opens
for its audience only, then revocation, expiry and restarts. Driven with the CLI."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, Gateway, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status
from tests.gateway.test_gateway_identity import _htpasswd
from tests.support.cli_in_process import schoolgate

USERS = {n: f"{n}-pw" for n in ("teacher", "teacher2", "dsl", "deputy", "tech", "pupil", "pupil2")}


@pytest.fixture()
def setup(tmp_path: Path, upstream: Upstream) -> Iterator[tuple[Path, Callable[[], Gateway]]]:
    policy = copy_policy(tmp_path)
    _htpasswd(policy.parent / "users.htpasswd", USERS)
    text = policy.read_text().replace(
        "identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:"
    )
    policy.write_text(text)
    started: list[Gateway] = []

    def start() -> Gateway:
        gw = start_mitmdump(policy, tmp_path / "var", upstream)
        started.append(gw)
        return gw

    yield policy, start
    for gw in started:
        gw.stop()


def cli(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    var = policy.parent.parent / "var"
    cmd = [
        str(VENV_BIN / "schoolgate"),
        *args[:2],
        *args[2:],
        "--policy",
        str(policy),
        "--var",
        str(var),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def cli_in_process(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """As `cli`, through the same entry point in this process (tests/support/cli_in_process):
    for the many refusals below; each command here still has a test through the real one."""
    var = policy.parent.parent / "var"
    return schoolgate(*args, "--policy", str(policy), "--var", str(var))


def status_for(gw: Gateway, user: str, url: str) -> int:
    return body_and_status(gw.curl(url, user=f"{user}:{USERS[user]}"))[1]


def wait_status(gw: Gateway, user: str, url: str, want: int, timeout: float = 5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if status_for(gw, user, url) == want:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{user} did not get {want} for {url} within {timeout} s")


def request(policy: Path, *extra: str) -> str:
    result = cli(policy, "unblock", "request", *extra)
    assert result.returncode == 0, result.stderr
    match = re.search(r"UB-[A-Z0-9]{6}", result.stdout)
    assert match
    return match.group(0)


def test_request_approve_open_for_audience_only_then_revoke(setup) -> None:  # type: ignore[no-untyped-def]
    policy, start = setup
    gw = start()
    url = "https://chatter.test/lesson/page"
    assert status_for(gw, "pupil", url) == 403
    uid = request(
        policy,
        "https://chatter.test/lesson",
        "--as",
        "teacher",
        "--for-user",
        "pupil",
        "--minutes",
        "30",
        "--reason",
        "Year 6 online safety lesson",
    )
    # Pending: nothing changes yet.
    assert status_for(gw, "pupil", url) == 403
    # Four eyes: the requester cannot approve, nor can another teacher.
    own = cli(policy, "unblock", "approve", uid, "--as", "teacher")
    assert own.returncode == 1 and "DSL or deputy" in own.stderr
    approved = cli(policy, "unblock", "approve", uid, "--as", "dsl", "--comment", "fine for lesson")
    assert approved.returncode == 0 and "active" in approved.stdout
    wait_status(gw, "pupil", url, 200)
    assert status_for(gw, "pupil2", url) == 403  # not in the audience
    assert status_for(gw, "pupil", "https://chatter.test/other") == 403  # outside the scope
    # Revocation takes effect at once.
    revoked = cli(policy, "unblock", "revoke", uid, "--as", "dsl", "--reason", "lesson over early")
    assert revoked.returncode == 0
    wait_status(gw, "pupil", url, 403)
    verify = cli(policy, "audit", "verify")
    assert verify.returncode == 0 and "OK" in verify.stdout
    export = cli(policy, "audit", "export", "--format", "csv").stdout
    for action in ("unblock.requested", "unblock.approved", "unblock.applied", "unblock.revoked"):
        assert action in export


def test_expiry_and_restart_across_the_window(setup) -> None:  # type: ignore[no-untyped-def]
    policy, start = setup
    gw = start()
    url = "https://chatter.test/"
    until = (datetime.now(UTC) + timedelta(seconds=12)).isoformat(timespec="seconds")
    uid = request(
        policy,
        "chatter.test",
        "--as",
        "teacher",
        "--for-profile",
        "ks2",
        "--until",
        until,
        "--reason",
        "research on social media for a debate",
    )
    assert cli(policy, "unblock", "approve", uid, "--as", "deputy").returncode == 0
    wait_status(gw, "pupil", url, 200)
    # Restart in the middle of the window: still open afterwards.
    gw.stop()
    gw = start()
    wait_status(gw, "pupil", url, 200)
    # Down across the expiry: closed after the restart, and the expiry is recorded.
    gw.stop()
    time.sleep(max(0.0, (datetime.fromisoformat(until) - datetime.now(UTC)).total_seconds() + 0.5))
    gw = start()
    assert status_for(gw, "pupil", url) == 403
    shown = cli(policy, "unblock", "show", uid)
    assert "expired" in shown.stdout
    assert "unblock.expired" in cli(policy, "audit", "export", "--format", "json").stdout


def test_illegal_tier_cannot_be_requested(setup) -> None:  # type: ignore[no-untyped-def]
    policy, _ = setup
    result = cli(
        policy,
        "unblock",
        "request",
        "http://illegal.test/exact.html",
        "--as",
        "teacher",
        "--for-user",
        "pupil",
        "--minutes",
        "5",
        "--reason",
        "test",
    )
    assert result.returncode == 1 and "illegal" in result.stderr
    assert "unblock.refused" in cli(policy, "audit", "export", "--format", "csv").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "chatter.test",
                "--as",
                "teacher",
                "--for-user",
                "nobody",
                "--minutes",
                "5",
                "--reason",
                "x",
            ],
            "Unknown user",
        ),
        (["chatter.test", "--as", "teacher", "--for-user", "pupil", "--minutes", "5"], "reason"),
        (
            [
                "chatter.test",
                "--as",
                "teacher",
                "--for-user",
                "pupil",
                "--until",
                "2020-01-01T10:00",
                "--reason",
                "x",
            ],
            "already passed",
        ),
        (
            [
                "http://exa mple.com/",
                "--as",
                "teacher",
                "--for-user",
                "pupil",
                "--minutes",
                "5",
                "--reason",
                "x",
            ],
            "not a web address",
        ),
        (
            [
                "chatter.test",
                "--as",
                "pupil",
                "--for-user",
                "pupil",
                "--minutes",
                "5",
                "--reason",
                "x",
            ],
            "not a member of staff",
        ),
        (
            [
                "chatter.test",
                "--as",
                "teacher",
                "--for-profile",
                "ks2",
                "--minutes",
                "20000",
                "--reason",
                "x",
            ],
            "at most 7 days",
        ),
    ],
)
def test_bad_requests_get_a_clear_error_and_change_nothing(setup, args, message) -> None:  # type: ignore[no-untyped-def]
    policy, _ = setup
    result = cli_in_process(policy, "unblock", "request", *args)
    assert result.returncode == 1 and message in result.stderr
    assert cli_in_process(policy, "unblock", "list").stdout.strip() == ""
