"""`schoolgate run` (what `make run` starts) with the shipped example policy, and
what happens when the policy or its lists are broken at start-up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, VENV_BIN, Upstream, copy_policy, free_port, wait_for_port
from tests.gateway.test_gateway_e2e import body_and_status

SCHOOLGATE = str(VENV_BIN / "schoolgate")


def test_run_serves_allowed_and_blocked_pages_with_the_example_policy(
    tmp_path: Path, upstream: Upstream
) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "run.log"
    cmd = [
        SCHOOLGATE,
        "run",
        "--policy",
        "policies/school.yaml",
        "--var",
        str(tmp_path / "var"),
        "--listen-port",
        str(port),
        "--set",
        f"schoolgate_metrics_port={metrics_port}",
        "--set",  # the test's upstream is on this machine's loopback (upstream_guard.py)
        "schoolgate_allow_local_upstreams=true",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        proxy = [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-x",
            f"http://127.0.0.1:{port}",
            "-w",
            "\n%{http_code}",
        ]
        # localhost resolves to the test's upstream on loopback: an ordinary allowed site.
        allowed = subprocess.run(
            [*proxy, f"http://localhost:{upstream.http_port}/lesson"],
            capture_output=True,
            text=True,
        )
        body, code = body_and_status(allowed)
        assert code == 200 and json.loads(body)["path"] == "/lesson"
        # The same server by bare IP: blocked for the default (learner) profile.
        blocked = subprocess.run(
            [*proxy, f"http://127.0.0.1:{upstream.http_port}/lesson"],
            capture_output=True,
            text=True,
        )
        body, code = body_and_status(blocked)
        assert code == 403 and "Oakfield Primary School" in body and "numbers" in body
        assert (tmp_path / "var" / "ca" / "mitmproxy-ca-cert.pem").exists()
        status = subprocess.run(
            [SCHOOLGATE, "status", "--var", str(tmp_path / "var")], capture_output=True, text=True
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "Oakfield Primary School" in status.stdout and "state:     ok" in status.stdout
        scraped = subprocess.run(
            ["curl", "-sS", f"http://127.0.0.1:{metrics_port}/metrics"],
            capture_output=True,
            text=True,
        ).stdout
        assert 'schoolgate_decisions_total{category="none",outcome="block"' in scraped
    finally:
        proc.terminate()
        proc.wait(10)


def _run_expecting_refusal(policy: Path, var: Path) -> str:
    """Start `schoolgate run`; it must exit at once with an error. Returns stderr."""
    cmd = [SCHOOLGATE, "run", "--policy", str(policy), "--var", str(var)]
    cmd += ["--listen-port", str(free_port())]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    return result.stderr


def test_run_refuses_to_start_when_a_list_is_missing(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    (policy.parent / "lists" / "social.txt").unlink()
    stderr = _run_expecting_refusal(policy, tmp_path / "var")
    assert "social.txt" in stderr and "does not exist" in stderr


def test_run_refuses_to_start_when_a_list_is_unreadable(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    folder = policy.parent / "lists" / "ut1-adult"
    (folder / "domains").unlink()
    (folder / "domains").mkdir()  # a folder where a list file should be: unreadable
    assert "domains" in _run_expecting_refusal(policy, tmp_path / "var")


def test_plain_mitmdump_with_a_broken_policy_refuses_to_start(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    policy.write_text(policy.read_text().replace("profiles:", "profiles: [", 1))
    result = subprocess.run(
        [
            str(VENV_BIN / "mitmdump"),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(free_port()),
            "-s",
            str(ROOT / "proxy_addons" / "gateway" / "chain.py"),
            "--set",
            f"schoolgate_policy={policy}",
            "--set",
            f"schoolgate_var={tmp_path / 'var'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert re.search(
        rf"{re.escape(str(policy))}, line \d+: this is not valid YAML",
        result.stdout + result.stderr,
    )


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy_addons.cli.main", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "policy" in result.stdout


def test_run_passes_host_only_sites_through_with_their_own_certificate(
    tmp_path: Path, upstream: Upstream
) -> None:
    """`schoolgate run` adds the Filter after mitmproxy's own NextLayer, which then decides
    first; the Filter's TLS decision must still win, so a host-only site is not decrypted."""
    import shutil

    import yaml

    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    policy = tmp_path / "policies" / "school.yaml"
    settings = yaml.safe_load(policy.read_text())
    settings["decryption"]["host_only"]["domains"] = ["localhost"]
    policy.write_text(yaml.safe_dump(settings, sort_keys=False))
    port = free_port()
    log = tmp_path / "run.log"
    cmd = [SCHOOLGATE, "run", "--policy", str(policy), "--var", str(tmp_path / "var"),
           "--listen-port", str(port), "--set", "schoolgate_metrics_port=0",
           "--set", "schoolgate_allow_local_upstreams=true"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        curl = ["curl", "-sSv", "-k", "--max-time", "10", "-x", f"http://127.0.0.1:{port}"]
        passed = subprocess.run(
            [*curl, f"https://localhost:{upstream.https_port}/account"],
            capture_output=True,
            text=True,
        )
        assert passed.returncode == 0, passed.stderr
        assert json.loads(passed.stdout)["path"] == "/account"
        assert "issuer: CN=local upstream" in passed.stderr  # the site's own certificate
        # Not host-only: the same kind of request is decrypted by the school's CA.
        decrypted = subprocess.run([*curl, "https://127.0.0.1:1/"], capture_output=True, text=True)
        assert "issuer: CN=local upstream" not in decrypted.stderr
        assert "403" in decrypted.stdout or "blocked" in decrypted.stdout.lower()
    finally:
        proc.terminate()
        proc.wait(10)
