"""`schoolgate doctor`: every check both ways, on real files, sockets, databases and nftables.

The time-sync check reads timedatectl or chronyc. systemd is not PID 1 on this
machine (nor in CI) and chrony is not running, so small stand-in programs of the
same names, put first on PATH, print what the real ones print; everything else
is real.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy_addons.cli import main as cli
from proxy_addons.cli.doctor import _store_check
from proxy_addons.core.lists.build import build_index
from proxy_addons.core.policy.load import load_policy
from proxy_addons.ops import school_ca
from proxy_addons.ops.doctor.ca import check_ca
from proxy_addons.ops.doctor.findings import Check, Level
from proxy_addons.ops.doctor.lists import check_lists
from proxy_addons.ops.doctor.machine import (
    check_content_scan,
    check_firewall,
    check_python,
    check_time_sync,
)
from proxy_addons.ops.doctor.permissions import check_permissions
from proxy_addons.ops.doctor.ports import check_port, check_ports, tcp_listeners
from proxy_addons.ops.doctor.store import check_store
from proxy_addons.ops.install_config import ConfigError, InstallConfig, read_env_file
from proxy_addons.store import Store, store_url
from tests.conftest import copy_policy, free_port
from tests.pg import db_url  # noqa: F401  (a fixture)

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another user)")


def levels(checks: list[Check]) -> list[Level]:
    return [c.level for c in checks]


# ----------------------------------------------------------------- settings


def test_env_file_is_read_as_systemd_and_sh_read_it(tmp_path: Path) -> None:
    path = tmp_path / "schoolgate.env"
    path.write_text(
        "# comment\n\nSCHOOLGATE_VAR=/srv/sg\nexport SCHOOLGATE_WEB_PORT=9000\n"
        'SCHOOLGATE_PROXY_MODES="--set mode=regular --set mode=transparent@8082"\n'
        "SCHOOLGATE_DSN=\n"
    )
    values = read_env_file(path)
    assert values["SCHOOLGATE_PROXY_MODES"] == "--set mode=regular --set mode=transparent@8082"
    cfg = InstallConfig.load(path)
    assert (cfg.var, cfg.web_port, cfg.dsn) == (Path("/srv/sg"), 9000, "")
    assert cfg.transparent and cfg.transparent_port == 8082
    assert not InstallConfig().transparent and InstallConfig().transparent_port is None
    # The shipped file parses, and is explicit mode.
    shipped = InstallConfig.load(Path(__file__).parents[2] / "deploy" / "etc" / "schoolgate.env")
    assert shipped.listen_port == 8080 and not shipped.transparent

    path.write_text("SCHOOLGATE_VAR=/x\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"schoolgate.env:2: expected NAME=VALUE"):
        read_env_file(path)
    path.write_text("SCHOOLGATE_WEB_PORT=eighty\n")
    with pytest.raises(ConfigError, match="SCHOOLGATE_WEB_PORT must be a number"):
        InstallConfig.load(path)


# ----------------------------------------------------------------- python


def test_python_version() -> None:
    assert check_python((3, 13, 5)).level is Level.OK
    old = check_python((3, 11, 2))
    assert old.level is Level.FAIL and "3.11.2" in old.message and "--python" in old.fix


def test_content_scan_memory_in_c() -> None:
    # Built by `make` (pip install -e .) here; without it, a warning that says how to fix it.
    assert check_content_scan().level is Level.OK
    missing = check_content_scan(built=False)
    assert missing.level is Level.WARN and "python3-dev" in missing.fix


# ----------------------------------------------------------------- permissions


@pytest.fixture
def layout(tmp_path: Path) -> InstallConfig:
    """An installation as install.sh leaves it, for the user 'nobody' (group 'nogroup')."""
    etc, var = tmp_path / "etc", tmp_path / "var"
    for folder in (etc, etc / "secrets", var, var / "ca", var / "lists", var / "log"):
        folder.mkdir(parents=True)
    (etc / "schoolgate.env").write_text("SCHOOLGATE_VAR=x\n")
    (etc / "school.yaml").write_text("school: {}\n")
    (etc / "secrets" / "smtp-password").write_text("secret\n")
    (var / "ca" / "mitmproxy-ca.pem").write_text("key\n")
    (var / "schoolgate.db").write_text("")
    (var / "lists" / "domains").write_text("x.test\n")
    if os.geteuid() == 0:
        nobody = 65534
        for path in (etc, *etc.rglob("*")):
            os.chown(path, 0, nobody)
        for path in (var, *var.rglob("*")):
            os.chown(path, nobody, nobody)
    for path in (etc, etc / "secrets", var, var / "lists", var / "log"):
        path.chmod(0o750)
    for path in (etc / "schoolgate.env", etc / "school.yaml", etc / "secrets" / "smtp-password"):
        path.chmod(0o640)
    (var / "ca").chmod(0o700)
    (var / "ca" / "mitmproxy-ca.pem").chmod(0o600)
    (var / "schoolgate.db").chmod(0o640)
    (var / "lists" / "domains").chmod(0o644)
    return InstallConfig(
        env_file=etc / "schoolgate.env",
        policy=etc / "school.yaml",
        var=var,
        etc=etc,
        service_user="nobody",
    )


@ROOT_ONLY
def test_permissions_ok_as_installed(layout: InstallConfig) -> None:
    assert levels(check_permissions(layout)) == [Level.OK]


@ROOT_ONLY
def test_permissions_each_problem_is_named(layout: InstallConfig) -> None:
    (layout.etc / "schoolgate.env").chmod(0o644)  # may hold the database password
    (layout.etc / "school.yaml").chmod(0o666)  # anyone could change the policy
    (layout.etc / "secrets").chmod(0o770)  # the service could change what's in it
    (layout.var / "ca" / "mitmproxy-ca.pem").chmod(0o640)
    os.chown(layout.var / "schoolgate.db", 0, 0)  # left by root running a command
    found = check_permissions(layout)
    messages = "\n".join(c.message for c in found)
    assert set(levels(found)) == {Level.FAIL}
    assert "secrets anyone on this machine can read" in messages and "schoolgate.env" in messages
    assert "configuration others can change" in messages and "school.yaml" in messages
    [changeable] = [c.message for c in found if "others can change" in c.message]
    assert str(layout.etc / "secrets") in changeable
    assert "private key" in messages
    assert "not owned by nobody" in messages and "schoolgate.db (root)" in messages


@ROOT_ONLY
def test_permissions_world_readable_data_counts_only_where_others_can_reach_it(
    layout: InstallConfig,
) -> None:
    (layout.var / "schoolgate.db").chmod(0o644)
    assert levels(check_permissions(layout)) == [Level.OK]  # var is 0750
    layout.var.chmod(0o755)
    [found] = check_permissions(layout)
    assert found.level is Level.FAIL and "schoolgate.db" in found.message
    assert "lists" not in found.message  # the lists are public anyway


def test_permissions_missing_user_and_unreadable_policy(layout: InstallConfig) -> None:
    missing = InstallConfig(
        etc=layout.etc, var=layout.var, service_user=f"no-{uuid.uuid4().hex[:8]}"
    )
    [found] = check_permissions(missing)
    assert found.level is Level.FAIL and "there is no user" in found.message
    if os.geteuid() == 0:
        (layout.policy).chmod(0o600)  # root:nogroup 0600: nobody can't read it
        found_all = check_permissions(layout)
        assert any("cannot read" in c.message for c in found_all)


# ----------------------------------------------------------------- CA


def _cert(key: ec.EllipticCurvePrivateKey, name: str, days: int) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def _write_ca(folder: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / "mitmproxy-ca.pem").write_bytes(
        pem_key + cert.public_bytes(serialization.Encoding.PEM)
    )


def test_ca_made_by_schoolgate_is_ok_and_expiry_is_seen(tmp_path: Path) -> None:
    info = school_ca.create(tmp_path / "ca", "Oakfield Primary")
    [found] = check_ca(tmp_path / "ca")
    assert found.level is Level.OK and "Oakfield Primary" in found.message
    [soon] = check_ca(tmp_path / "ca", now=info.not_after - timedelta(days=30))
    assert soon.level is Level.WARN and "expires" in soon.message
    [expired] = check_ca(tmp_path / "ca", now=info.not_after + timedelta(days=1))
    assert expired.level is Level.FAIL and "expired" in expired.message


def test_ca_missing_broken_mismatched_or_mitmproxys(tmp_path: Path) -> None:
    [missing] = check_ca(tmp_path / "none")
    assert missing.level is Level.FAIL and "ca init" in missing.fix
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mitmproxy-ca.pem").write_text("not a pem\n")
    assert levels(check_ca(tmp_path / "bad")) == [Level.FAIL]

    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _write_ca(tmp_path / "mismatch", other, _cert(key, "Test School CA", 365))
    [found] = check_ca(tmp_path / "mismatch")
    assert found.level is Level.FAIL and "does not match" in found.message

    _write_ca(tmp_path / "mitm", key, _cert(key, "mitmproxy", 365))
    [found] = check_ca(tmp_path / "mitm")
    assert found.level is Level.WARN and "mitmproxy's default" in found.message


# ----------------------------------------------------------------- lists


def test_lists_build_and_the_current_index_is_found(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    var = tmp_path / "var"
    checks = check_lists(policy, var)
    assert levels(checks) == [Level.OK, Level.WARN]
    assert "an index builds" in checks[0].message and "no index" in checks[1].message
    cats = [c.sources for c in load_policy(policy).categories.values()]
    build_index(cats, var / "index")
    [found] = check_lists(policy, var)
    assert found.level is Level.OK and "the index is current" in found.message
    # A list edited since: the index is not current; the lists are read again.
    games = policy.parent / "lists" / "games.hosts"
    games.write_text(games.read_text() + "0.0.0.0 more-games.test\n")
    assert levels(check_lists(policy, var)) == [Level.OK, Level.WARN]


def test_lists_broken_policy_or_missing_list_fail(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    shutil.rmtree(policy.parent / "lists" / "ut1-adult")
    [found] = check_lists(policy, tmp_path / "var")
    assert found.level is Level.FAIL and "ut1-adult" in found.message
    policy.write_text("school: [\n")
    [found] = check_lists(policy, tmp_path / "var")
    assert found.level is Level.FAIL and "does not load" in found.message


# ----------------------------------------------------------------- store


def test_store_at_head_and_behind(db_url: str) -> None:  # noqa: F811
    Store.open(db_url).dispose()
    found = check_store(db_url)
    assert found.level is Level.OK and "(current)" in found.message
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    behind = check_store(db_url)
    assert behind.level is Level.FAIL and "at schema 0001" in behind.message
    assert "store upgrade" in behind.fix


def test_store_missing_empty_or_unreachable(tmp_path: Path) -> None:
    missing = check_store(store_url(tmp_path / "none"))
    assert missing.level is Level.FAIL and "no store" in missing.message
    assert not (tmp_path / "none").exists(), "the check must not create the store"
    sqlite3.connect(tmp_path / "empty.db").close()
    empty = check_store(f"sqlite:///{tmp_path / 'empty.db'}")
    assert empty.level is Level.FAIL and "no Schoolgate schema" in empty.message
    port = free_port()  # nothing listens there
    gone = check_store(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db")
    assert gone.level is Level.FAIL and "can't reach" in gone.message
    assert "secret" not in gone.message


def test_store_upgrade_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["store", "upgrade", "--var", str(tmp_path)]) == 0
    assert "at schema" in capsys.readouterr().out
    assert check_store(store_url(tmp_path)).level is Level.OK


# ----------------------------------------------------------------- ports


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """Start listening programs; argv[1] names them (with or without 'schoolgate')."""
    started: list[subprocess.Popen[bytes]] = []
    port = free_port()
    yield port, started
    for proc in started:
        proc.kill()
        proc.wait()


def _listen(port: int, script: Path, started: list[subprocess.Popen[bytes]]) -> None:
    script.write_text(
        "import socket, sys, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    started.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"


def test_port_ours_listening_other_program_or_nothing(
    listener: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, started = listener
    nothing = check_port(
        "proxy port",
        "127.0.0.1",
        port,
        "SCHOOLGATE_LISTEN_PORT",
        "schoolgate",
        tcp_listeners(),
    )
    assert nothing.level is Level.WARN and "not running" in nothing.message

    _listen(port, tmp_path / "some-other-server.py", started)
    other = check_port(
        "proxy port",
        "127.0.0.1",
        port,
        "SCHOOLGATE_LISTEN_PORT",
        "schoolgate",
        tcp_listeners(),
    )
    assert other.level is Level.FAIL and "taken by another program" in other.message
    assert "some-other-server" in other.message and "SCHOOLGATE_LISTEN_PORT" in other.fix
    started.pop().kill()

    _listen(port, tmp_path / "schoolgate-gateway.py", started)
    ours = check_port(
        "proxy port",
        "127.0.0.1",
        port,
        "SCHOOLGATE_LISTEN_PORT",
        "schoolgate",
        tcp_listeners(),
    )
    assert ours.level is Level.OK and f"127.0.0.1:{port}" in ours.message


def test_port_on_an_address_this_machine_does_not_have() -> None:
    # 192.0.2.1 is TEST-NET-1: only bound, never sent to.
    found = check_port("web port", "192.0.2.1", free_port(), "SCHOOLGATE_WEB_HOST", "web", {})
    assert found.level is Level.FAIL and "not an address of this machine" in found.message


def test_ports_covers_the_transparent_listener() -> None:
    cfg = InstallConfig(listen_port=free_port(), proxy_modes="--set mode=transparent@8082")
    names = [c.name for c in check_ports(cfg, listeners={})]
    assert names == ["proxy port", "web port", "metrics port", "transparent port"]


# ----------------------------------------------------------------- time


def _stand_in(folder: Path, name: str, output: str, status: int = 0) -> None:
    folder.mkdir(exist_ok=True)
    path = folder / name
    # Shell built-ins only: PATH holds nothing but these stand-ins.
    path.write_text(
        "#!/bin/sh\nwhile IFS= read -r line; do printf '%s\\n' \"$line\"; done <<'EOF'\n"
        f"{output}\nEOF\nexit {status}\n"
    )
    path.chmod(0o755)


CHRONY_SYNCED = """Reference ID    : C0A80001 (ntp.school.example)
Stratum         : 3
System time     : 0.000120 seconds fast of NTP time
Leap status     : Normal"""
CHRONY_UNSYNCED = """Reference ID    : 00000000 ()
Stratum         : 0
System time     : 0.000000 seconds slow of NTP time
Leap status     : Not synchronised"""


def test_time_sync_timedatectl_and_chrony(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    bin_dir.mkdir()
    nothing = check_time_sync(systemd=True)
    assert nothing.level is Level.WARN and "can't tell" in nothing.message

    _stand_in(bin_dir, "timedatectl", "yes")
    assert check_time_sync(systemd=True).level is Level.OK
    _stand_in(bin_dir, "timedatectl", "no")
    unsynced = check_time_sync(systemd=True)
    assert unsynced.level is Level.FAIL and "set-ntp" in unsynced.fix

    (bin_dir / "timedatectl").unlink()
    _stand_in(bin_dir, "chronyc", CHRONY_SYNCED)
    synced = check_time_sync(systemd=False)
    assert synced.level is Level.OK and "0.000" in synced.message
    _stand_in(bin_dir, "chronyc", CHRONY_UNSYNCED)
    found = check_time_sync(systemd=False)
    assert found.level is Level.FAIL and "Not synchronised" in found.message


# ----------------------------------------------------------------- firewall

NEEDS_NETNS = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root, iproute2 and nftables (.ci/run installs them)",
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"sg-doctor-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@NEEDS_NETNS
def test_firewall_table_in_a_namespace(netns: str) -> None:
    nft = ("ip", "netns", "exec", netns, "nft")
    transparent = InstallConfig(proxy_modes="--set mode=regular --set mode=transparent@8082")
    explicit = InstallConfig()
    missing = check_firewall(transparent, nft=nft)
    assert missing.level is Level.FAIL and "not redirected" in missing.message
    assert check_firewall(explicit, nft=nft).level is Level.WARN

    subprocess.run([*nft, "add", "table", "inet", "schoolgate"], check=True)
    loaded = check_firewall(transparent, nft=nft)
    assert loaded.level is Level.OK and "transparent" in loaded.message
    assert check_firewall(explicit, nft=nft).level is Level.OK


def test_firewall_without_nft() -> None:
    transparent = InstallConfig(proxy_modes="--set mode=transparent")
    found = check_firewall(transparent, nft=("no-such-nft-here",))
    assert found.level is Level.FAIL and "apt-get install nftables" in found.fix
    assert check_firewall(InstallConfig(), nft=("no-such-nft-here",)).level is Level.WARN


# ----------------------------------------------------------------- the command


def _installation(tmp_path: Path) -> Path:
    """A small installation owned by the user running the tests, with a CA, store and lists."""
    policy = copy_policy(tmp_path)
    var = tmp_path / "var"
    var.mkdir(mode=0o750)
    school_ca.create(var / "ca", "Test Primary")
    Store.open(store_url(var)).dispose()
    for path in (policy.parent, *policy.parent.rglob("*")):
        path.chmod(0o750 if path.is_dir() else 0o640)
    for path in (var, *var.rglob("*")):
        path.chmod(path.stat().st_mode & 0o770)
    env = policy.parent / "schoolgate.env"
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
    env.write_text(
        f"SCHOOLGATE_POLICY={policy}\nSCHOOLGATE_VAR={var}\nSCHOOLGATE_USER={user}\n"
        f"SCHOOLGATE_LISTEN_HOST=127.0.0.1\nSCHOOLGATE_LISTEN_PORT={free_port()}\n"
        f"SCHOOLGATE_WEB_PORT={free_port()}\nSCHOOLGATE_METRICS_PORT={free_port()}\n"
    )
    env.chmod(0o640)
    return env


@ROOT_ONLY
def test_doctor_command_passes_a_sound_installation_and_fails_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _installation(tmp_path)
    started = time.monotonic()
    code = cli.main(["doctor", "--env", str(env), "--json"])
    assert time.monotonic() - started < 60
    found = {c["name"]: c["level"] for c in json.loads(capsys.readouterr().out)}
    assert code == 0, found
    for name in ("python", "permissions", "ca", "store"):
        assert found[name] == "OK", found
    assert found["proxy port"] == "WARN"  # not running: a WARN, not a FAIL

    shutil.rmtree(tmp_path / "var" / "ca")
    assert cli.main(["doctor", "--env", str(env)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  ca" in out and "fix: schoolgate ca init" in out
    assert out.rstrip().splitlines()[-1].endswith("1 FAIL")


@ROOT_ONLY
def test_doctor_as_root_checks_the_store_as_its_owner(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    Store.open(store_url(var)).dispose()
    for leftover in var.glob("schoolgate.db-*"):
        leftover.unlink()
    for path in (var, *var.iterdir()):
        os.chown(path, 65534, 65534)
    env = tmp_path / "schoolgate.env"
    env.write_text(f"SCHOOLGATE_VAR={var}\nSCHOOLGATE_POLICY={tmp_path / 'none.yaml'}\n")
    found = _store_check(InstallConfig.load(env))
    # This Python may not be one 'nobody' can run (the test venv under /root): then the
    # doctor says so rather than open the store as root. The system test runs the
    # other branch for real (tests/ops/test_system_install.py).
    runnable = (
        subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-c", "pass"], capture_output=True
        ).returncode
        == 0
    )
    if runnable:
        assert found.level is Level.OK, found
    else:
        assert found.level is Level.WARN and "as its owner" in found.message, found
    assert {p.stat().st_uid for p in var.iterdir()} == {65534}, "no root-owned files"


def test_socket_helper_sees_a_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port in tcp_listeners()
