"""The doctor's check of owners and modes: the service user; /etc/schoolgate root's and
private; the data the service's and private."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

from proxy_addons.ops.doctor.ca import CA_FILE
from proxy_addons.ops.doctor.findings import Check, fail, ok
from proxy_addons.ops.install_config import InstallConfig

_WALK_LIMIT = 50_000  # files looked at under /var/lib/schoolgate (backups can be many)
_SHOW = 3  # offending paths named in one message


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
