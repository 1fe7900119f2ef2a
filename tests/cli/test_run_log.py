"""What `schoolgate run` (as `make run` starts it) writes to its log at the default level:
what an operator needs, not a line per connection; and a busy port named in Schoolgate's
own options."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.conftest import ROOT, VENV_BIN, Upstream, free_port, wait_for_port

SCHOOLGATE = str(VENV_BIN / "schoolgate")


def _run_cmd(var: Path, port: int, metrics_port: int) -> list[str]:
    return [
        SCHOOLGATE,
        "run",
        "--policy",
        "policies/school.yaml",
        "--var",
        str(var),
        "--listen-port",
        str(port),
        "--set",
        f"schoolgate_metrics_port={metrics_port}",
        "--set",  # the test's upstream is on this machine's loopback (upstream_guard.py)
        "schoolgate_allow_local_upstreams=true",
    ]


def test_twenty_requests_add_no_connection_chatter(tmp_path: Path, upstream: Upstream) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _run_cmd(tmp_path / "var", port, metrics_port),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc, log)
        started = log.read_text().splitlines()
        for n in range(20):  # allowed and blocked, ten each, each its own connection
            host = "localhost" if n % 2 else "127.0.0.1"
            done = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "10",
                    "-x",
                    f"http://127.0.0.1:{port}",
                    "-w",
                    "%{http_code}",
                    f"http://{host}:{upstream.http_port}/lesson/{n}",
                ],
                capture_output=True,
                text=True,
            )
            assert done.stdout == ("200" if n % 2 else "403"), done.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = log.read_text().splitlines()
    traffic = lines[len(started) :]
    print(f"log: {len(started)} lines at start, {len(traffic)} for 20 requests")
    chatter = [line for line in lines if "client connect" in line or "client disconnect" in line]
    assert chatter == []
    assert not any("frozenset(" in line for line in lines)
    assert len(traffic) <= 2, traffic  # at most the shutdown's own lines


def test_a_busy_port_names_schoolgates_option(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            _run_cmd(tmp_path / "var", port, free_port()),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "--listen-port" in said and "SCHOOLGATE_LISTEN_PORT" in said, said
    assert "--mode" not in said and "regular@" not in said, said
