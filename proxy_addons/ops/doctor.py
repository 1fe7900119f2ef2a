"""`schoolgate doctor`'s checks: is this installation sound, and if not, what to do.

Each check returns `Check`s of OK, WARN (works, but look at it: or this machine
can't tell, as in a chroot with no systemd) or FAIL (the gateway is broken, or
unsafe, until fixed); a WARN or FAIL says what to run or change. The checks only
read: nothing here writes to the installation (a list index is built in a
temporary folder), so the doctor is safe to run at any time, as root too.
Commands the checks call (timedatectl, chronyc, nft) go through `Runner` so a
caller can run them elsewhere, e.g. inside a network namespace.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from proxy_addons.core.content import piece_memo
from proxy_addons.ops.install_config import InstallConfig

CA_FILE = "mitmproxy-ca.pem"  # key and certificate, as mitmproxy's confdir holds them
CA_WARN_DAYS = 90
LIST_UPDATE_STATUS = Path("run") / "lists-update.json"
LIST_UPDATE_MAX_AGE = timedelta(days=8)
_WALK_LIMIT = 50_000  # files looked at under /var/lib/schoolgate (backups can be many)
_SHOW = 3  # offending paths named in one message


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it stands, and what to do about it."""

    name: str
    level: Level
    message: str
    fix: str = ""


def ok(name: str, message: str) -> Check:
    return Check(name, Level.OK, message)


def warn(name: str, message: str, fix: str = "") -> Check:
    return Check(name, Level.WARN, message, fix)


def fail(name: str, message: str, fix: str = "") -> Check:
    return Check(name, Level.FAIL, message, fix)


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a command for its output (no shell; 10 s at most)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)


# ----------------------------------------------------------------- Python


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(str(p) for p in version)
    if version[:2] >= (3, 12):
        return ok("python", f"Python {shown} ({sys.executable})")
    return fail(
        "python",
        f"Python {shown} is too old: Schoolgate needs 3.12 or newer",
        "re-run deploy/install.sh with --python pointing at Python 3.12+ (docs/install.md)",
    )


def check_content_scan(built: bool | None = None) -> Check:
    """Is the content scan's piece memory in C built? Without it pages are scored right,
    but several times slower (docs/content-filtering.md, Speed)."""
    if built is None:
        built = piece_memo.native()
    if built:
        return ok(
            "content scan", "piece memory built in C (proxy_addons/core/content/_piece_memo.c)"
        )
    return warn(
        "content scan",
        "piece memory running in Python: page scans are correct but several times slower",
        "install a C compiler and Python's headers (apt-get install gcc python3-dev), then "
        "re-run deploy/install.sh",
    )


# ----------------------------------------------------------------- owners and modes


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _readable_by(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _user_ids(user: str) -> tuple[int, set[int]] | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    return entry.pw_uid, gids


def _walk(root: Path) -> Iterable[Path]:
    """Every path under root (root included), not following links, up to _WALK_LIMIT."""
    yield root
    seen = 1
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            seen += 1
            if seen > _WALK_LIMIT:
                return
            yield Path(folder) / name


def _named(paths: list[str]) -> str:
    more = f" and {len(paths) - _SHOW} more" if len(paths) > _SHOW else ""
    return ", ".join(paths[:_SHOW]) + more


def check_permissions(cfg: InstallConfig) -> list[Check]:
    """The service user; /etc/schoolgate root's and private; the data the service's and private."""
    ids = _user_ids(cfg.service_user)
    if ids is None:
        return [
            fail(
                "permissions",
                f"there is no user '{cfg.service_user}' for the services to run as",
                "run deploy/install.sh (it creates the system user)",
            )
        ]
    uid, gids = ids
    results: list[Check] = []

    # Configuration: nobody but root may change it; secrets readable by the service only.
    writable: list[str] = []
    exposed: list[str] = []
    if not cfg.etc.is_dir():
        results.append(fail("permissions", f"{cfg.etc} is missing", "run deploy/install.sh"))
    else:
        for path in _walk(cfg.etc):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            # Only root may change the configuration: not others, not a group, and
            # not the service itself (a compromised gateway can't rewrite its policy).
            if (
                st.st_mode & stat.S_IWOTH
                or (st.st_gid != 0 and st.st_mode & stat.S_IWGRP)
                or (st.st_uid != 0 and st.st_mode & stat.S_IWUSR)
            ):
                writable.append(str(path))
            secret = path == cfg.env_file or "secrets" in path.relative_to(cfg.etc).parts
            if secret and st.st_mode & stat.S_IROTH:
                exposed.append(str(path))
        if writable:
            results.append(
                fail(
                    "permissions",
                    f"configuration others can change: {_named(writable)}",
                    f"chown -R root:{cfg.service_user} {cfg.etc} && chmod -R g-w,o-rwx {cfg.etc}",
                )
            )
        if exposed:
            results.append(
                fail(
                    "permissions",
                    f"secrets anyone on this machine can read: {_named(exposed)}",
                    f"chmod o-rwx {' '.join(exposed[:_SHOW])} (0640 root:{cfg.service_user})",
                )
            )
        try:
            policy_st = cfg.policy.stat()
        except OSError:
            results.append(
                fail("permissions", f"the policy {cfg.policy} is missing", "run deploy/install.sh")
            )
        else:
            if not _readable_by(policy_st, uid, gids):
                results.append(
                    fail(
                        "permissions",
                        f"the service user {cfg.service_user} cannot read {cfg.policy}",
                        f"chown root:{cfg.service_user} {cfg.policy} && chmod 0640 {cfg.policy}",
                    )
                )

    # Data: the service's own, and private (browsing records, the CA key).
    foreign: list[str] = []
    public: list[str] = []
    if not cfg.var.is_dir():
        results.append(fail("permissions", f"{cfg.var} is missing", "run deploy/install.sh"))
    else:
        # Readable by others only counts where others can get to it: every folder
        # above it (from the data folder down) open to them.
        open_dirs = {cfg.var} if cfg.var.stat().st_mode & stat.S_IXOTH else set()
        lists = cfg.var / "lists"
        for path in _walk(cfg.var):
            st = path.lstat()
            if st.st_uid != uid:
                foreign.append(f"{path} ({_owner(st.st_uid)})")
            reachable = path == cfg.var or path.parent in open_dirs
            if stat.S_ISDIR(st.st_mode) and reachable and st.st_mode & stat.S_IXOTH:
                open_dirs.add(path)
            if (
                reachable
                and st.st_mode & stat.S_IROTH
                and not stat.S_ISLNK(st.st_mode)
                and path != lists
                and lists not in path.parents
            ):
                public.append(str(path))
        if foreign:
            results.append(
                fail(
                    "permissions",
                    f"data not owned by {cfg.service_user}, which the services may fail to "
                    f"write: {_named(foreign)}",
                    f"chown -R {cfg.service_user}:{cfg.service_user} {cfg.var}; run admin "
                    "commands through /usr/local/bin/schoolgate (it runs them as that user)",
                )
            )
        if public:
            results.append(
                fail(
                    "permissions",
                    f"data anyone on this machine can read: {_named(public)}",
                    f"chmod -R o-rwx {cfg.var}",
                )
            )
        key = cfg.var / "ca" / CA_FILE
        if key.exists() and key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            results.append(
                fail(
                    "permissions",
                    f"the CA's private key {key} is readable by others than its owner",
                    f"chmod 600 {key}",
                )
            )
    if not results:
        results.append(
            ok(
                "permissions",
                f"{cfg.etc} root's and private; {cfg.var} owned by {cfg.service_user}, private",
            )
        )
    return results


# ----------------------------------------------------------------- CA


def check_ca(ca_dir: Path, now: datetime | None = None) -> list[Check]:
    """The school's CA: present, in date, key matching, named for the school."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or datetime.now(UTC)
    path = ca_dir / CA_FILE
    fix = 'schoolgate ca init --school "Your School Name" (docs/ca.md)'
    if not path.exists():
        return [fail("ca", f"no CA at {path}", fix)]
    try:
        data = path.read_bytes()
        cert = x509.load_pem_x509_certificate(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as exc:
        return [fail("ca", f"{path} is not a PEM certificate and private key: {exc}", fix)]
    results: list[Check] = []
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string()
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        results.append(fail("ca", f"{path}: the private key does not match the certificate", fix))
    ends = cert.not_valid_after_utc
    if cert.not_valid_before_utc > now:
        results.append(
            fail(
                "ca",
                f"the CA '{name}' is not valid until {cert.not_valid_before_utc:%Y-%m-%d}",
                "check the clock (see time sync), or make a new CA: " + fix,
            )
        )
    if ends <= now:
        results.append(fail("ca", f"the CA '{name}' expired on {ends:%Y-%m-%d}", fix))
    elif ends - now < timedelta(days=CA_WARN_DAYS):
        results.append(
            warn(
                "ca",
                f"the CA '{name}' expires on {ends:%Y-%m-%d}: devices will reject the gateway",
                "make a new CA and deploy it to devices before then (docs/ca.md)",
            )
        )
    if name.lower().startswith("mitmproxy"):
        results.append(
            warn(
                "ca",
                f"the CA is mitmproxy's default one ('{name}'), not the school's own",
                fix,
            )
        )
    if not results:
        results.append(ok("ca", f"'{name}', valid until {ends:%Y-%m-%d}, key matches"))
    return results


# ----------------------------------------------------------------- lists


def check_lists(policy_path: Path, var: Path, now: datetime | None = None) -> list[Check]:
    """The policy loads, every list reads, an index builds and the current one is whole
    (its checksum matches, and its header is of these lists); the last list update worked."""
    from proxy_addons.core.lists.build import build_index
    from proxy_addons.core.lists.index import ListIndex
    from proxy_addons.core.lists.layout import Expected, IndexDamaged
    from proxy_addons.core.lists.sources import ListSourceError
    from proxy_addons.core.policy.load import PolicyError, load_policy

    now = now or datetime.now(UTC)
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        return [fail("lists", f"the policy does not load: {exc}", f"fix {policy_path}")]
    cats = [c.sources for c in policy.categories.values()]
    try:
        # Named by the lists' paths, sizes and times; its header must say so too (an
        # index of other lists under this name is damage).
        expected = Expected.of(cats)
        current = var / "index" / f"lists-{expected.fingerprint}.idx"
    except ListSourceError as exc:
        return [fail("lists", f"a list can't be read: {exc}", f"fix {policy_path}")]
    if current.exists():
        try:
            with ListIndex.open(current, expected) as index:
                entries = index.entry_count
            return [
                ok(
                    "lists",
                    f"{len(cats)} categories, {entries} entries; the index is current and whole",
                ),
                *_list_update_status(var, now),
            ]
        except IndexDamaged as exc:
            return [
                fail(
                    "lists",
                    f"{exc}: the gateway blocks everything while it serves a damaged index, "
                    "and rebuilds it as soon as it sees the damage",
                    "schoolgate status (has it rebuilt it?); if not, systemctl restart "
                    "schoolgate; then check the disk (dmesg, smartctl)",
                ),
                *_list_update_status(var, now),
            ]
        except ListSourceError:
            pass  # unreadable: build one aside, as for a missing one
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="schoolgate-doctor-") as tmp:
            with ListIndex.open(build_index(cats, Path(tmp))) as index:
                entries = index.entry_count
    except ListSourceError as exc:
        return [fail("lists", f"the lists don't build into an index: {exc}", f"fix {policy_path}")]
    seconds = time.monotonic() - started
    return [
        ok(
            "lists",
            f"{len(cats)} categories, {entries} entries; an index builds in {seconds:.1f} s",
        ),
        warn(
            "lists",
            f"no index for the current lists in {var / 'index'}: the gateway builds it "
            "when it starts or reloads",
        ),
        *_list_update_status(var, now),
    ]


def _list_update_status(var: Path, now: datetime) -> list[Check]:
    """What the last `schoolgate lists update` said, if one ever ran."""
    import json

    results: list[Check] = []
    status_path = var / LIST_UPDATE_STATUS
    if status_path.exists():
        try:
            status = json.loads(status_path.read_text())
            at = datetime.fromisoformat(status["at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            results.append(warn("lists", f"can't read {status_path}: {exc}"))
            return results
        if not status.get("ok"):
            results.append(
                warn(
                    "lists",
                    f"the last list update ({at:%Y-%m-%d %H:%M}) failed: {status.get('message')}; "
                    "the lists before it are in use",
                    "schoolgate lists update (see its message); journalctl -u schoolgate-lists",
                )
            )
        elif now - at > LIST_UPDATE_MAX_AGE:
            results.append(
                warn(
                    "lists",
                    f"the lists were last updated on {at:%Y-%m-%d}",
                    "systemctl status schoolgate-lists.timer; schoolgate lists update",
                )
            )
        else:
            results.append(ok("lists", f"lists updated {at:%Y-%m-%d %H:%M}"))
    return results


# ----------------------------------------------------------------- the running gateway


def check_gateway(var: Path, status_url: str | None = None) -> Check:
    """What the running gateway says of itself: a failed reload, a damaged index, a status
    file it cannot write, lost access-log records (live /status first: gateway_status.py).
    A status that is not a gateway's is a FAIL; a live pid that is not the gateway's
    process is "not running"."""
    from proxy_addons.ops.status import (
        StatusError,
        age,
        found_problems,
        is_running,
        read_status,
    )

    try:
        found = read_status(var, status_url)
    except StatusError as exc:
        return fail(
            "gateway",
            f"the gateway's status cannot be read: {exc}",
            "if a gateway runs, touch the policy file (its reload writes the status again); "
            "if none does, delete the status file",
        )
    if found is None:
        return warn("gateway", "no status: the gateway has not run with this var folder")
    status = found.status
    running = is_running(found)
    if not running.running:
        written = found.written_at
        return warn(
            "gateway",
            f"not running: {running.why} (its last status, written {age(written)}, is in "
            f"{found.source})",
        )
    bad, look = found_problems(found)
    if bad:
        return fail(
            "gateway",
            "; ".join(line.replace("\n", " ") for line in bad),
            "schoolgate status; free space in the var folder (df -h) or fix what the "
            "message names; the gateway tries again by itself",
        )
    if look:
        return warn("gateway", "; ".join(look), "check the disk (df -h, dmesg, smartctl)")
    index = status.get("list_index") or {}
    return ok(
        "gateway",
        f"running ({running.why}); policy in force since {status.get('loaded_at')}; list "
        f"index verified at {index.get('verified_at')}",
    )


# ----------------------------------------------------------------- store


def check_store(url: str) -> Check:
    """The store answers and its schema is at this version's head (read only)."""
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from proxy_addons.store import alembic_config

    parsed = sa.make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    fix = "schoolgate store upgrade (deploy/install.sh runs it)"
    if parsed.get_backend_name() == "sqlite":
        db = Path(parsed.database or "")
        if not db.exists():
            return fail("store", f"no store at {db}", fix)
        # Read only: a check must not create files (as root, they'd be root's).
        engine = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    else:
        engine = sa.create_engine(parsed, connect_args={"connect_timeout": 5})
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return fail(
            "store",
            f"can't reach the store {shown}: {reason}",
            "check SCHOOLGATE_DSN in schoolgate.env and that the database server runs",
        )
    finally:
        engine.dispose()
    if current == heads:
        return ok("store", f"{shown} at schema {', '.join(sorted(heads))} (current)")
    if not current:
        return fail("store", f"{shown} has no Schoolgate schema", fix)
    return fail(
        "store",
        f"{shown} is at schema {', '.join(sorted(current))}; this version needs "
        f"{', '.join(sorted(heads))}",
        fix,
    )


# ----------------------------------------------------------------- ports


@dataclass(frozen=True)
class Listener:
    pid: int | None
    command: str  # short, to show
    ours: bool = False  # a Schoolgate process (by its full command line)


def tcp_listeners() -> dict[int, list[Listener]]:
    """Listening TCP ports and the processes behind them (pid None when not ours to see)."""
    import psutil

    found: dict[int, list[Listener]] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        command, ours = "", False
        if conn.pid:
            try:
                argv = psutil.Process(conn.pid).cmdline()
            except (psutil.Error, OSError):
                argv = []
            full = " ".join(argv)
            ours = "schoolgate" in full or "proxy_addons" in full
            # "python3.13 server.py", not the full paths: enough to recognise it.
            command = " ".join(" ".join(os.path.basename(a) for a in argv[:4]).split())
        found.setdefault(conn.laddr.port, []).append(Listener(conn.pid, command, ours))
    return found


def _bind_problem(host: str, port: int) -> str | None:
    """Why binding host:port fails, or None (a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine"
            return exc.strerror or str(exc)
    return None


def check_port(
    name: str,
    host: str,
    port: int,
    setting: str,
    service: str,
    listeners: dict[int, list[Listener]],
) -> Check:
    """A configured port: ours listening is OK; another program on it is a FAIL."""
    where = f"{host}:{port}"
    found = listeners.get(port, [])
    ours = [item for item in found if item.ours]
    if ours:
        return ok(name, f"listening on {where} (pid {ours[0].pid})")
    if found:
        others = [item for item in found if item.pid]
        if not others:
            return warn(
                name,
                f"something listens on port {port}, but this user can't see what",
                "run schoolgate doctor as root",
            )
        return fail(
            name,
            f"port {port} is taken by another program (pid {others[0].pid}: "
            f"{others[0].command[:80]}): {service} can't listen there",
            f"stop that program, or set another {setting} in schoolgate.env",
        )
    problem = _bind_problem(host, port)
    if problem:
        return fail(name, f"{service} can't listen on {where}: {problem}", f"check {setting}")
    return warn(
        name,
        f"nothing listens on {where}: {service} is not running",
        f"systemctl start {service}; journalctl -u {service} says why it stopped",
    )


def check_ports(
    cfg: InstallConfig, listeners: dict[int, list[Listener]] | None = None
) -> list[Check]:
    found = tcp_listeners() if listeners is None else listeners
    checks = [
        check_port(
            "proxy port",
            cfg.listen_host,
            cfg.listen_port,
            "SCHOOLGATE_LISTEN_PORT",
            "schoolgate",
            found,
        ),
        check_port(
            "web port", cfg.web_host, cfg.web_port, "SCHOOLGATE_WEB_PORT", "schoolgate-web", found
        ),
    ]
    if cfg.metrics_port:
        checks.append(
            check_port(
                "metrics port",
                cfg.metrics_host,
                cfg.metrics_port,
                "SCHOOLGATE_METRICS_PORT",
                "schoolgate",
                found,
            )
        )
    port = cfg.transparent_port
    if port is not None and port != cfg.listen_port:
        checks.append(
            check_port(
                "transparent port",
                cfg.listen_host,
                port,
                "SCHOOLGATE_PROXY_MODES",
                "schoolgate",
                found,
            )
        )
    return checks


# ----------------------------------------------------------------- time


def check_time_sync(run: Runner = run_command, systemd: bool | None = None) -> Check:
    """Certificates, schedules and the audit trail need the right time."""
    fix = "timedatectl set-ntp true (systemd-timesyncd), or install chrony"
    systemd = Path("/run/systemd/system").is_dir() if systemd is None else systemd
    if systemd and shutil.which("timedatectl"):
        proc = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
        answer = proc.stdout.strip()
        if proc.returncode == 0 and answer == "yes":
            return ok("time sync", "the clock is synchronised (timedatectl)")
        if proc.returncode == 0 and answer == "no":
            return fail("time sync", "the clock is not synchronised with NTP (timedatectl)", fix)
    if shutil.which("chronyc"):
        proc = run(["chronyc", "tracking"])
        if proc.returncode == 0:
            leap = re.search(r"^Leap status\s*:\s*(.+)$", proc.stdout, re.MULTILINE)
            offset = re.search(r"^System time\s*:\s*([\d.]+) seconds", proc.stdout, re.MULTILINE)
            off = float(offset.group(1)) if offset else 0.0
            if leap and leap.group(1).strip() == "Normal" and off < 1.0:
                return ok("time sync", f"chrony is synchronised (offset {off:.3f} s)")
            state = leap.group(1).strip() if leap else "unknown"
            return fail(
                "time sync",
                f"chrony is not synchronised ({state}, offset {off:.3f} s)",
                "chronyc sources -v shows why (is UDP 123 to the NTP servers allowed?)",
            )
    return warn(
        "time sync",
        "can't tell whether the clock is synchronised (no systemd running, no chrony)",
        fix,
    )


# ----------------------------------------------------------------- firewall


def check_firewall(
    cfg: InstallConfig, run: Runner = run_command, nft: Sequence[str] = ("nft",)
) -> Check:
    """The schoolgate nftables table is loaded (required in transparent mode)."""
    name = "firewall"
    rules = (
        "deploy/nftables/schoolgate.nft"
        if cfg.transparent
        else ("deploy/nftables/schoolgate-explicit.nft")
    )
    fix = f"edit and load {rules} (docs/network.md)"
    bad = fail if cfg.transparent else warn
    if not shutil.which(nft[-1]):
        return bad(name, "nft is not installed", f"apt-get install nftables; then {fix}")
    try:
        proc = run([*nft, "list", "tables"])
    except (OSError, subprocess.SubprocessError) as exc:
        return bad(name, f"can't run nft: {exc}", fix)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()[:1]
        return bad(
            name,
            f"can't read the firewall rules: {why[0] if why else proc.returncode}",
            "run schoolgate doctor as root",
        )
    if re.search(r"^table \S+ schoolgate$", proc.stdout, re.MULTILINE):
        mode = "transparent" if cfg.transparent else "explicit"
        return ok(name, f"the schoolgate nftables table is loaded ({mode} mode)")
    if cfg.transparent:
        return fail(
            name,
            "transparent mode is set, but no schoolgate nftables table is loaded: clients' "
            "traffic is not redirected to the gateway",
            fix,
        )
    return warn(
        name,
        "no schoolgate nftables table is loaded: nothing stops devices going round the proxy, "
        "or others using it",
        fix,
    )


def summary(checks: Sequence[Check]) -> tuple[int, int, int]:
    counts = {level: sum(c.level is level for c in checks) for level in Level}
    return counts[Level.OK], counts[Level.WARN], counts[Level.FAIL]


def _main(argv: Sequence[str]) -> int:
    """`python -m proxy_addons.ops.doctor store URL`: the store check as JSON, for running it
    as the data's owner (cli_doctor does, when root runs the doctor on a SQLite store)."""
    import json

    if len(argv) != 2 or argv[0] != "store":
        print("usage: python -m proxy_addons.ops.doctor store URL", file=sys.stderr)
        return 2
    result = check_store(argv[1])
    print(
        json.dumps(
            {
                "name": result.name,
                "level": result.level.value,
                "message": result.message,
                "fix": result.fix,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
