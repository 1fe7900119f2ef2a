"""`schoolgate status` and doctor's `gateway` check believe neither a damaged status file
nor a live pid alone.

- A status file of the wrong shape (not JSON, not an object, a field missing or of the
  wrong type, as a hand edit or a damaged disk leaves it) is an error naming the file and
  the field, exit 2, never a traceback; doctor FAILs it.
- A gateway is "running" only if its live /status answers for the same var folder, or
  the file's pid is a gateway process (schoolgate run, mitmdump with the gateway's add-on)
  started before the file was written: pid 1, another program, a dead pid, or a gateway
  started after the file was written is "not running", never "state: ok".
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_addons.cli import main as cli
from proxy_addons.core.policy.runtime import PolicyRuntime
from proxy_addons.ops import status as gateway_status
from proxy_addons.ops.doctor.findings import Level
from proxy_addons.ops.doctor.gateway import check_gateway
from proxy_addons.ops.status import check_status, gateway_process
from tests.conftest import Upstream, copy_policy, free_port, start_mitmdump
from tests.gateway.test_damaged_state import wait_for

# JSON values of every kind, to put where a field should be.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The status file a real runtime writes (the pid is this test process's)."""
    tmp = tmp_path_factory.mktemp("written")
    runtime = PolicyRuntime(copy_policy(tmp), tmp / "var")
    runtime.start()
    status: dict[str, Any] = json.loads(runtime.status_path.read_text())
    assert check_status(status, "the runtime's") == status  # what it writes is a status
    return status


def status_file(var: Path, content: object) -> Path:
    """Write var/run/status.json: a dict as JSON, bytes or text as they are."""
    path = var / "run" / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))
    return path


def run_status(var: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`schoolgate status` for `var`, with no live /status to find."""
    capsys.readouterr()
    dead = f"http://127.0.0.1:{free_port()}/status"
    code = cli.main(["status", "--var", str(var), "--status-url", dead])
    out, err = capsys.readouterr()
    return code, out, err


def ours(status: dict[str, Any], var: Path, **changes: Any) -> dict[str, Any]:
    """`status` as written for `var`, with `changes` (a value None removes the field)."""
    new = {**status, "var": str(var.resolve()), **changes}
    return {k: v for k, v in new.items() if v is not None}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def now_iso(delta: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).isoformat(timespec="seconds")


# -- the file's shape --------------------------------------------------------------------

# (what the file holds, the field the error must name). Callables get the good status.
BAD_FILES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "empty file": (lambda s: "", "not JSON"),
    "not JSON": (lambda s: "{pid: 1", "not JSON"),
    "binary": (lambda s: b"\xff\xfe\x00garbage", "not JSON"),
    "a list": (lambda s: [], "not a JSON object"),
    "null": (lambda s: None, "not a JSON object"),
    "a string": (lambda s: '"ok"', "not a JSON object"),
    "pid x": (lambda s: {"pid": "x"}, "'pid'"),
    "pid only": (lambda s: {"pid": 1}, "is missing"),
    "red team's file": (
        lambda s: {"pid": 1, "profiles": ["staff"], "list_index": {"state": "ok"}},
        "is missing",
    ),
    "pid true": (lambda s: s | {"pid": True}, "'pid'"),
    "pid negative": (lambda s: s | {"pid": -5}, "'pid'"),
    "pid float": (lambda s: s | {"pid": 1.5}, "'pid'"),
    "no profiles": (lambda s: {k: v for k, v in s.items() if k != "profiles"}, "'profiles'"),
    "profiles text": (lambda s: s | {"profiles": "staff"}, "'profiles'"),
    "profiles numbers": (lambda s: s | {"profiles": [1, 2]}, "'profiles'"),
    "no written_at": (lambda s: {k: v for k, v in s.items() if k != "written_at"}, "'written_at'"),
    "written_at words": (lambda s: s | {"written_at": "yesterday"}, "'written_at'"),
    "written_at no zone": (lambda s: s | {"written_at": "2026-01-01T10:00:00"}, "'written_at'"),
    "state unknown": (lambda s: s | {"state": "great"}, "'state'"),
    "list_index text": (lambda s: s | {"list_index": "damaged"}, "'list_index'"),
    "list_index state": (lambda s: s | {"list_index": {"state": "fine"}}, "'list_index.state'"),
    "last_damage text": (
        lambda s: s | {"list_index": {"state": "ok", "last_damage": "x"}},
        "'list_index.last_damage'",
    ),
    "last_damage no message": (
        lambda s: s | {"list_index": {"state": "damaged", "last_damage": {"at": now_iso()}}},
        "'list_index.last_damage.message'",
    ),
    "last_error text": (lambda s: s | {"last_error": "boom"}, "'last_error'"),
    "last_error no at": (lambda s: s | {"last_error": {"message": "boom"}}, "'last_error.at'"),
    "last_error attempts": (
        lambda s: s | {"last_error": {"at": now_iso(), "message": "m", "attempts": "2"}},
        "'last_error.attempts'",
    ),
    "status_file_error": (lambda s: s | {"status_file_error": ["full"]}, "'status_file_error'"),
    "lost counts": (
        lambda s: s | {"access_log": {"lost": {"file": "many"}}},
        "'access_log.lost'",
    ),
    "reloads negative": (lambda s: s | {"reloads": -1}, "'reloads'"),
    "failed_reloads bool": (lambda s: s | {"failed_reloads": True}, "'failed_reloads'"),
    "var number": (lambda s: s | {"var": 7}, "'var'"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_status_file_of_the_wrong_shape_is_an_error_naming_the_file_and_field(
    tmp_path: Path, written: dict[str, Any], capsys: pytest.CaptureFixture[str], case: str
) -> None:
    make, named = BAD_FILES[case]
    var = tmp_path / "var"
    good = ours(written, var, written_at=now_iso())
    path = status_file(var, make(good))
    code, out, err = run_status(var, capsys)
    assert code == 2, out + err
    assert str(path) in err and named in err, err
    assert "state:     ok" not in out and "running" not in out
    doctor = check_gateway(var, f"http://127.0.0.1:{free_port()}/status")
    assert doctor.level is Level.FAIL and str(path) in doctor.message and named in doctor.message


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(
        [
            "pid",
            "state",
            "written_at",
            "var",
            "profiles",
            "policy",
            "school",
            "loaded_at",
            "list_entries",
            "reloads",
            "failed_reloads",
            "list_index",
            "last_error",
            "status_file_error",
            "access_log",
            "status_url",
        ]
    ),
    value=JSON,
)
def test_any_value_in_any_field_is_shown_or_refused_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory,
    written: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
) -> None:
    var = tmp_path_factory.mktemp("any") / "var"
    status_file(var, ours(written, var, written_at=now_iso()) | {field: value})
    code, out, err = run_status(var, capsys)  # raises (fails the test) on a traceback
    if code == 2 and not out:
        assert "status.json: " in err
    else:  # accepted: but the pid is this test process, not a gateway
        assert code in (1, 2) and "not running" in out and "state:     ok" not in out
    assert check_gateway(var, f"http://127.0.0.1:{free_port()}/status").level is not Level.OK


def test_a_damaged_workers_file_is_a_warning_not_a_traceback(
    tmp_path: Path, written: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    status_file(var, ours(written, var, written_at=now_iso()))
    workers = var / "run" / "workers.json"
    for bad in (
        "[]",
        '{"workers": 3}',
        '{"workers": [{"pid": "x", "index": 0, "restarts": 0}]}',
        '{"workers": [{"index": 0}]}',
        '{"workers": [{"pid": -4, "index": 0, "restarts": 0}]}',
    ):
        workers.write_text(bad)
        code, out, _err = run_status(var, capsys)
        assert code == 1 and "not running" in out
        assert ("not a list of workers" in out) or "worker 0:  not running" in out, bad


# -- the pid -------------------------------------------------------------------------------


@pytest.fixture
def other_program() -> Iterator[int]:
    """A live process that is not a gateway: a sleep named like one, even."""
    proc = subprocess.Popen(["bash", "-c", "exec -a schoolgate sleep 60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("who", ["pid 1", "this test process", "another program", "dead"])
def test_a_live_pid_that_is_not_the_gateway_is_not_running(
    tmp_path: Path,
    written: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    other_program: int,
    who: str,
) -> None:
    pid = {
        "pid 1": 1,
        "this test process": written["pid"],
        "another program": other_program,
        "dead": dead_pid(),
    }[who]
    if who == "pid 1" and gateway_process(1).running:
        pytest.skip("pid 1 here is a Schoolgate gateway")
    var = tmp_path / "var"
    status_file(var, ours(written, var, pid=pid, written_at=now_iso()))
    code, out, err = run_status(var, capsys)
    assert code == 1, out + err
    assert f"gateway:   not running: pid {pid} " in out
    assert "state:     not running" in out and "state:     ok" not in out
    assert "written at " in out and " s ago)" in out  # the file's age
    doctor = check_gateway(var, f"http://127.0.0.1:{free_port()}/status")
    assert doctor.level is Level.WARN and doctor.message.startswith("not running")


def test_a_gateway_pid_counts_only_if_it_started_before_the_file_was_written(
    tmp_path: Path, upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real mitmdump without a metrics port (no live /status): its own status file
    says running; the same pid under a file written before it started does not."""
    var = tmp_path / "var"
    gateway = start_mitmdump(copy_policy(tmp_path), var, upstream)  # metrics port 0
    try:
        own = wait_for(lambda: _read(var / "run" / "status.json"), what="its status file")
        assert own["pid"] == gateway.process.pid
        code, out, err = run_status(var, capsys)
        assert code == 0, out + err
        assert f"gateway:   running: pid {own['pid']} is a gateway process" in out
        assert "state:     ok" in out
        assert check_gateway(var, f"http://127.0.0.1:{free_port()}/status").level is Level.OK

        status_file(var, own | {"written_at": now_iso(-3600)})  # before it started
        code, out, _err = run_status(var, capsys)
        assert code == 1 and "after the status was written" in out and "state:     ok" not in out

        elsewhere = tmp_path / "other-var"
        status_file(var, own | {"var": str(elsewhere)})  # a file of another var folder
        code, out, _err = run_status(var, capsys)
        assert code == 1 and f"about the var folder {elsewhere}" in out
        status_file(var, own)
    finally:
        gateway.stop()
    code, out, _err = run_status(var, capsys)
    assert code == 1 and f"pid {own['pid']} is not running" in out
    assert "state:     ok" not in out


def test_a_damaged_file_beside_a_live_gateway_is_a_warning(
    tmp_path: Path, upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    var, port = tmp_path / "var", free_port()
    gateway = start_mitmdump(
        copy_policy(tmp_path), var, upstream, extra=["--set", f"schoolgate_metrics_port={port}"]
    )
    try:
        wait_for(lambda: _read(var / "run" / "status.json"), what="its status file")
        url = f"http://127.0.0.1:{port}/status"
        wait_for(lambda: gateway_status._fetch(url, 2), what="its live /status")
        path = status_file(var, '{"pid": "x"}')
        capsys.readouterr()
        code = cli.main(
            ["status", "--var", str(var), "--status-url", f"http://127.0.0.1:{port}/status"]
        )
        out = capsys.readouterr().out
        assert code == 0 and "running: its /status answers" in out
        assert f"WARNING:   the status file is not a gateway's status: {path}: field 'pid'" in out
        doctor = check_gateway(var, f"http://127.0.0.1:{port}/status")
        assert doctor.level is Level.WARN and "field 'pid'" in doctor.message
    finally:
        gateway.stop()
