"""`schoolgate run --workers N`: processes sharing one port, restarted when they die."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from proxy_addons.cli.workers import worker_command
from proxy_addons.ops.workers import (
    RESTART_DELAY_MIN,
    Supervisor,
    enable_reuse_port,
    metrics_port_for,
)
from tests.conftest import ROOT, VENV_BIN, Upstream, free_port, wait_for_port

SCHOOLGATE = str(VENV_BIN / "schoolgate")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _wait(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_supervisor_restarts_a_killed_worker_and_stops_all(tmp_path: Path) -> None:
    state = tmp_path / "run" / "workers.json"
    sup = Supervisor(command=lambda i: SLEEPER, count=2, state_file=state)
    sup.start()
    try:
        first = sup.pids()
        assert len(set(first.values())) == 2
        assert json.loads(state.read_text())["workers"][1]["pid"] == first[1]
        os.kill(first[1], signal.SIGKILL)
        _wait(lambda: (sup.check(), sup.pids()[1] != first[1])[1])
        assert sup.pids()[0] == first[0]  # the other worker was left alone
        assert sup.workers[1].restarts == 1 and sup.workers[1].delay == RESTART_DELAY_MIN
        assert json.loads(state.read_text())["workers"][1]["pid"] == sup.pids()[1]
    finally:
        sup.shutdown()
    assert all(w.process is not None and w.process.poll() is not None for w in sup.workers)
    assert not state.exists()


def test_a_worker_that_keeps_dying_backs_off(tmp_path: Path) -> None:
    sup = Supervisor(command=lambda i: [sys.executable, "-c", "raise SystemExit(3)"], count=1)
    sup.start()
    try:
        delays = []
        for _ in range(3):
            _wait(lambda: (sup.check(), sup.workers[0].restart_at is not None)[1])
            delays.append(sup.workers[0].delay)
            _wait(lambda: (sup.check(), sup.workers[0].restart_at is None)[1], timeout=10)
        assert delays == [RESTART_DELAY_MIN, RESTART_DELAY_MIN * 2, RESTART_DELAY_MIN * 4]
    finally:
        sup.shutdown()


def test_worker_commands_share_the_port_and_get_their_own_metrics_port() -> None:
    import argparse

    args = argparse.Namespace(
        policy="p.yaml",
        var="v",
        listen_host="0.0.0.0",
        listen_port=3128,
        set=["schoolgate_metrics_port=9500", "connection_strategy=lazy"],
    )
    zero, two = worker_command(args, 0), worker_command(args, 2)
    assert zero[zero.index("--listen-port") + 1] == two[two.index("--listen-port") + 1] == "3128"
    assert "schoolgate_metrics_port=9500" in zero and "schoolgate_metrics_port=9502" in two
    assert sum(a.startswith("schoolgate_metrics_port") for a in two) == 1
    assert "connection_strategy=lazy" in two and two[two.index("--worker-index") + 1] == "2"
    assert metrics_port_for(3, 0) == 0  # metrics off stays off


def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    import asyncio

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> int:
        port = free_port()
        one = await asyncio.start_server(handler, "127.0.0.1", port)
        two = await asyncio.start_server(handler, "127.0.0.1", port)
        one.close()
        two.close()
        return port

    original = asyncio.start_server
    try:
        enable_reuse_port()
        enable_reuse_port()  # idempotent
        assert asyncio.run(main()) > 0
    finally:
        asyncio.start_server = original


def _exited(pid: int) -> float:
    """When `pid` has exited (a zombie has closed all its files) - polled closely."""
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return time.monotonic()
        except psutil.NoSuchProcess:
            return time.monotonic()
        time.sleep(0.005)


def _listeners(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }


def test_a_worker_killed_under_load_is_restarted_and_only_its_requests_fail(
    tmp_path: Path, upstream: Upstream
) -> None:
    port, metrics = free_port(), free_port()
    var = tmp_path / "var"
    log = tmp_path / "run.log"
    cmd = [SCHOOLGATE, "run", "--policy", "policies/school.yaml", "--var", str(var),
           "--listen-port", str(port), "--workers", "2",
           "--set", f"schoolgate_metrics_port={metrics}",
           "--set", "schoolgate_allow_local_upstreams=true"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        _wait(lambda: len(_listeners(port)) == 2, timeout=60)
        state = var / "run" / "workers.json"
        pids = {w["index"]: w["pid"] for w in json.loads(state.read_text())["workers"]}
        assert set(pids.values()) == _listeners(port)

        clients, stop = 8, threading.Event()
        results: list[tuple[float, float, bool]] = []  # started, finished, ok
        lock = threading.Lock()

        def client() -> None:
            while not stop.is_set():
                started = time.monotonic()
                ok = False
                try:  # a new connection per request, as many browsers' first requests are
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("GET", f"http://localhost:{upstream.http_port}/lesson")
                    response = conn.getresponse()
                    ok = response.status == 200 and b'"/lesson"' in response.read()
                    conn.close()
                except OSError:
                    ok = False
                with lock:
                    results.append((started, time.monotonic(), ok))

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        killed_at = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        gone_at = _exited(pids[0])  # its sockets are closed: the kernel sends it nothing more
        _wait(lambda: (pids[0] not in _listeners(port)) and len(_listeners(port)) == 2, 60)
        restarted_at = time.monotonic()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(15)

        failed = [r for r in results if not r[2]]
        before = [r for r in results if r[1] < killed_at]
        after = [r for r in results if r[0] > restarted_at]
        assert before and all(ok for _, _, ok in before), "requests failed before the kill"
        # Only the killed worker's own requests fail: ones that reached it before it was gone.
        # (A connection begun within 0.1 s of the exit may still have been queued on its socket
        # on a loaded machine: seen at 0.052 s in a run with three test workers.)
        late = [started - gone_at for started, _, ok in failed if started > gone_at + 0.1]
        assert not late, f"requests failed after the worker was gone: {late}"
        assert after and all(ok for _, _, ok in after)
        new = {w["index"]: w for w in json.loads(state.read_text())["workers"]}
        # Restarted (on a loaded machine a first restart can itself fail and be retried: seen
        # once in CI as 2), and the other worker untouched.
        assert new[0]["pid"] != pids[0] and new[0]["restarts"] >= 1 and new[1]["pid"] == pids[1]
        print(f"{len(results)} requests, {len(failed)} failed at the kill")
    finally:
        proc.terminate()
        proc.wait(30)
    assert not _listeners(port), "workers left running after the supervisor stopped"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--workers", "0"], "between 1 and 64"),
        (["--workers", "65"], "between 1 and 64"),
        (["--workers", "2", "--listen-port", "0"], "fixed --listen-port"),
    ],
)
def test_bad_worker_settings_are_refused_clearly(
    bad: list[str], message: str, tmp_path: Path
) -> None:
    args = [SCHOOLGATE, "run", "--var", str(tmp_path), *bad]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr
