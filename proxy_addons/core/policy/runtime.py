"""The policy in force, its list index, and safe live reloads.

A reload is built off the request path (the index in a subprocess) and swapped in
with one assignment; a broken edit leaves the last good policy in force.

Nothing that fails here is silent. The state is kept in memory (`status()`: the
metrics endpoint serves it as /status) and written to the status file that
`schoolgate status` reads, when the disk lets it; a status file that cannot be
written is retried and shown. A failed reload goes to `on_error` (metrics, alerts),
and one that failed for a reason that may pass with nothing edited (a full disk, an
unreadable file) is tried again every `retry_seconds` until it is in force.

The list index is checked against its checksum, and its header against what the
policy's lists give (an index of other lists under its name is damage too), when it
is opened, and again by `verify_index` (every so often, and whenever its file changes
or is replaced). A damaged index is rebuilt; until it is, every lookup in it refuses,
so the Filter blocks: damaged state never opens the filter.

Over 400 lines: one class, whose reloads, retries, index checks and status share its
locks, timers and state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from proxy_addons.core.lists.build_process import build_in_subprocess
from proxy_addons.core.lists.index import Builder, ListIndex, open_built
from proxy_addons.core.lists.layout import error_may_pass
from proxy_addons.core.lists.sources import ListSourceError
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.3
RETRY_SECONDS = 30.0  # schoolgate_reload_retry_seconds (state_health.py)
VERIFY_DEBOUNCE_SECONDS = 0.2


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    index: ListIndex
    loaded_at: datetime


class PolicyLoadError(RuntimeError):
    """The policy or one of its lists could not be loaded; the message says what to fix.

    `may_pass`: the cause may go away with nothing edited (a full disk, an unreadable
    file), so the load is worth trying again.
    """

    def __init__(self, message: str, *, may_pass: bool = False) -> None:
        super().__init__(message)
        self.may_pass = may_pass


def load_with(
    policy_path: Path,
    index_dir: Path,
    build: Builder,
    *,
    on_damaged: Callable[[str], None] | None = None,
) -> LoadedPolicy:
    """Validate the policy and open its list index, built (if need be) by `build`.

    The index is checked against its checksum and the lists; a damaged one (or an index
    of other lists under its name) is rebuilt, after telling `on_damaged`, and never
    served.
    """
    try:
        policy = load_policy(policy_path)
        cats = [c.sources for c in policy.categories.values()]
        index = open_built(cats, index_dir, build, on_damaged=on_damaged)
    except (PolicyError, ListSourceError) as exc:
        raise PolicyLoadError(str(exc), may_pass=error_may_pass(exc)) from exc
    return LoadedPolicy(policy, index, datetime.now(UTC))


def watched_paths(policy: Policy) -> set[Path]:
    """The policy file, every file it includes and every list folder."""
    paths = {Path(p) for p in policy.files}
    for category in policy.categories.values():
        paths.update(s.path for s in category.sources.sources)
    paths.update(policy.illegal.sources)
    return paths


class _Events(FileSystemEventHandler):
    def __init__(self, runtime: PolicyRuntime) -> None:
        self.runtime = runtime

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(os.fsdecode(raw))
            if self.runtime.is_index(path):
                self.runtime.schedule_verify()  # written to in place, replaced or removed
                return
            if self.runtime.is_relevant(path):
                self.runtime.schedule_reload()
                return


class PolicyRuntime:
    """Holds the current `LoadedPolicy`; watches its files and reloads them."""

    def __init__(
        self,
        policy_path: Path,
        var_dir: Path,
        on_reload: Callable[[LoadedPolicy], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        count_index_damage: Callable[[], None] | None = None,
    ) -> None:
        self.policy_path = Path(policy_path).resolve()
        self.var_dir = Path(var_dir)
        self.index_dir = self.var_dir / "index"
        self.status_path = self.var_dir / "run" / "status.json"
        self.on_reload = on_reload
        self.on_error = on_error
        # Told of every damaged list index found, first (the gateway's metrics count them).
        self.count_index_damage = count_index_damage
        # A damaged list index was found (it is being rebuilt): alerting.py listens.
        self.on_index_damaged: Callable[[str], None] | None = None
        self.current: LoadedPolicy | None = None
        self.previous: LoadedPolicy | None = None
        self.last_error: dict[str, Any] | None = None
        self.reloads = 0
        self.failed_reloads = 0
        self.retry_seconds = RETRY_SECONDS
        self.status_error: dict[str, str] | None = None  # the status file cannot be written
        self.index_damage: dict[str, Any] | None = None  # the last damaged index found
        self.index_damage_found = 0
        self.index_damage_untold = False  # found before anyone listened (at start-up)
        self.index_verified_at: str | None = None
        # More of the gateway's state for status() (e.g. the access log's lost records).
        self.status_parts: dict[str, Callable[[], Any]] = {}
        self._watched: set[Path] = set()
        self._observer: Any = None
        self._watches: dict[Path, Any] = {}
        self._reload_lock = threading.Lock()  # reloads run one at a time, newest last
        self._status_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._retry_timer: threading.Timer | None = None
        self._verify_timer: threading.Timer | None = None
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> LoadedPolicy:
        """Load at start-up; raises PolicyLoadError so the gateway refuses to start."""
        loaded = self._load()
        self._install(loaded)
        return loaded

    def _load(self) -> LoadedPolicy:
        """The policy and its index, built in a subprocess: off the request path, and numpy
        (the builder's) never loaded into the gateway."""
        return load_with(
            self.policy_path, self.index_dir, build_in_subprocess, on_damaged=self._index_damaged
        )

    def watch(self) -> None:
        """Watch the folders of every policy and list file (one observer, kept running),
        and the index folder (an index changed in place is checked at once)."""
        self._stopped = False
        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        self._sync_watches()

    def _sync_watches(self) -> None:
        # Adjust the running observer in place: replacing it would lose the events
        # that arrive in between (a second edit made during a reload).
        folders = {p if p.is_dir() else p.parent for p in self._watched}
        if self.index_dir.is_dir():
            folders.add(self.index_dir.resolve())
        for folder in folders - set(self._watches):
            self._watches[folder] = self._observer.schedule(
                _Events(self), str(folder), recursive=False
            )
        for folder in set(self._watches) - folders:
            self._observer.unschedule(self._watches.pop(folder))

    def stop_watching(self) -> None:
        with self._lock:
            self._stopped = True
            timers = (self._timer, self._retry_timer, self._verify_timer)
            self._timer = self._retry_timer = self._verify_timer = None
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
            self._watches.clear()
        for timer in timers:
            if timer is not None:
                timer.cancel()

    def is_relevant(self, path: Path) -> bool:
        path = path.resolve() if path.exists() else path.absolute()
        return path in self._watched or path.parent in self._watched

    def is_index(self, path: Path) -> bool:
        """Whether `path` is the file of the index in force."""
        cur = self.current
        if cur is None or path.name != cur.index.path.name:
            return False
        return path.parent.resolve() == cur.index.path.parent.resolve()

    def schedule_reload(self) -> None:
        """Debounce bursts of file events (editors write in several steps)."""
        self._start_timer("_timer", DEBOUNCE_SECONDS, self.reload)

    def schedule_verify(self) -> None:
        """Check the index in force soon (a burst of writes to its file makes one check)."""
        self._start_timer("_verify_timer", VERIFY_DEBOUNCE_SECONDS, self.verify_index)

    def _start_timer(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        with self._lock:
            old: threading.Timer | None = getattr(self, name)
            if old is not None:
                old.cancel()
            timer = threading.Timer(seconds, job)
            timer.daemon = True
            setattr(self, name, timer)
            timer.start()

    def reload(self) -> bool:
        """Load a new policy beside the old one and swap; keep the old one on failure."""
        with self._reload_lock:
            return self._reload()

    def _reload(self) -> bool:
        started = time.monotonic()
        try:
            loaded = self._load()
        except PolicyLoadError as exc:
            self._failed(exc)
            return False
        self.reloads += 1  # before _install writes the status file, which shows it
        self._install(loaded)
        logger.info("Policy reloaded in %.2f s (%s)", time.monotonic() - started, self.policy_path)
        if self.on_reload:
            try:
                self.on_reload(loaded)  # e.g. the audit record; the new policy is in force already
            except Exception:
                logger.exception("After the policy reload, recording it failed")
        if self._observer is not None:
            self._sync_watches()  # the set of list files may have changed
        return True

    def _failed(self, exc: PolicyLoadError) -> None:
        """Keep the failure, show it, tell on_error, and try again if it may pass."""
        message, now, before = str(exc), _now(), self.last_error
        again = before is not None and before["message"] == message
        self.failed_reloads += 1
        self.last_error = {
            "at": now,
            "message": message,
            "since": before["since"] if again and before else now,
            "attempts": before["attempts"] + 1 if again and before else 1,
            "retrying": exc.may_pass,
        }
        if again:
            logger.warning(
                "Policy reload failed again (attempt %d); the last good policy stays in force: %s",
                self.last_error["attempts"],
                message.splitlines()[0],
            )
        else:
            logger.error("Policy reload failed; the last good policy stays in force.\n%s", exc)
            if exc.may_pass:
                logger.info("It may pass by itself: trying again every %.0f s", self.retry_seconds)
        self.write_status()
        _tell(self.on_error, message)
        if exc.may_pass:
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        with self._lock:
            if self._stopped or self._retry_timer is not None:
                return
            timer = self._retry_timer = threading.Timer(max(0.1, self.retry_seconds), self._retry)
            timer.daemon = True
            timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._retry_timer = None
        error = self.last_error
        if error is not None and error.get("retrying"):
            self.reload()  # writes the status file too, and schedules the next try
        elif self.status_error is not None:
            self.write_status()

    def _install(self, loaded: LoadedPolicy) -> None:
        self.previous, self.current = self.current, loaded  # in-flight requests keep theirs
        self.last_error = None
        self.index_verified_at = _now()  # ListIndex.open checked it
        damage = self.index_damage
        if damage is not None and damage["rebuilt_at"] is None:
            damage["rebuilt_at"] = self.index_verified_at
            logger.warning("The list index is whole again: %s", loaded.index.path)
        self._watched = {p.resolve() for p in watched_paths(loaded.policy)}
        self.write_status()

    # -- the index's integrity ---------------------------------------------------------

    def verify_index(self) -> bool:
        """Check the index in force (its checksum, and the file now under its name); a
        damaged one blocks and is rebuilt."""
        loaded = self.current
        if loaded is None:
            return True
        index = loaded.index
        problem = index.verify()
        if problem is None:
            self.index_verified_at = _now()
            return True
        if index.damaged is None:
            index.mark_damaged(problem)  # from now on every lookup refuses: the Filter blocks
            logger.error("%s; blocking every request until it is rebuilt", problem)
            self._index_damaged(problem)
            self.schedule_reload()  # the rebuild; retried like any reload that may pass
        return False

    def _index_damaged(self, problem: str) -> None:
        """A damaged index was found (and is being rebuilt): count it, show it, tell."""
        damage = self.index_damage
        if damage is not None and damage["rebuilt_at"] is None:
            return  # the same damage, met again by the rebuild
        self.index_damage = {"at": _now(), "message": problem, "rebuilt_at": None}
        self.index_damage_found += 1
        if self.count_index_damage is not None:
            try:
                self.count_index_damage()
            except Exception:
                logger.exception("Counting a damaged list index failed")
        self.write_status()
        self.index_damage_untold = not _tell(self.on_index_damaged, problem)

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The gateway's state, from memory: what the status file holds when it can be
        written, and what the metrics endpoint's /status serves."""
        cur = self.current
        index = cur.index if cur else None
        if index is not None and index.damaged is not None:
            state = "blocking"  # the index in force is damaged: everything is blocked
        else:
            state = "error" if self.last_error else ("ok" if cur else "not loaded")
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "state": state,
            "policy": str(self.policy_path),
            "var": str(self.var_dir.resolve()),
            "school": cur.policy.school if cur else None,
            "loaded_at": cur.loaded_at.isoformat(timespec="seconds") if cur else None,
            "list_entries": cur.index.entry_count if cur else 0,
            "profiles": sorted(cur.policy.profiles) if cur else [],
            "reloads": self.reloads,
            "failed_reloads": self.failed_reloads,
            "last_error": self.last_error,
            "list_index": {
                "path": str(index.path) if index else None,
                "state": ("damaged" if index.damaged else "ok") if index else None,
                "verified_at": self.index_verified_at,
                "damage_found": self.index_damage_found,
                "last_damage": self.index_damage,
            },
            "status_file_error": self.status_error,
            "written_at": _now(),
        }
        for name, part in list(self.status_parts.items()):
            try:
                out[name] = part()
            except Exception as exc:  # one part failing must not hide the rest
                out[name] = {"error": str(exc)}
        return out

    def write_status(self) -> bool:
        """Replace the status file; when it cannot be written (a full disk), say so once,
        keep the state in memory and try again later."""
        with self._status_lock:
            tmp = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}.tmp")
            try:
                self.status_path.parent.mkdir(parents=True, exist_ok=True)
                data = self.status() | {"status_file_error": None}
                tmp.write_text(json.dumps(data, indent=2))
                os.replace(tmp, self.status_path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                if self.status_error is None:  # a warning: mitmdump exits on start-up errors
                    logger.warning(
                        "Cannot write the status file %s: %s; the metrics endpoint's /status "
                        "shows the state meanwhile",
                        self.status_path,
                        exc.strerror or exc,
                    )
                    self.status_error = {"since": _now(), "message": str(exc.strerror or exc)}
                self.status_error["at"] = _now()
            else:
                if self.status_error is not None:
                    logger.warning("The status file %s is written again", self.status_path)
                self.status_error = None
                return True
        self._schedule_retry()
        return False


def _tell(callback: Callable[[str], None] | None, message: str) -> bool:
    """Call a listener; True if there was one and it did not fail (it may be a full disk)."""
    if callback is None:
        return False
    try:
        callback(message)
    except Exception:
        logger.exception("Telling of a policy or index problem failed")
        return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
