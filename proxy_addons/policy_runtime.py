"""The policy in force, its list index, and safe live reloads.

A reload is built off the request path (the index in a subprocess) and swapped in
with one assignment; a broken edit leaves the last good policy in force and is
written to the status file that `schoolgate status` reads.
"""

from __future__ import annotations

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

from proxy_addons.listindex import ListIndex, build_index
from proxy_addons.listsources import ListSourceError
from proxy_addons.policy import Policy
from proxy_addons.policy_loader import PolicyError, load_policy

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.3


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    index: ListIndex
    loaded_at: datetime


class PolicyLoadError(RuntimeError):
    """The policy or one of its lists could not be loaded; the message says what to fix."""


def load_all(policy_path: Path, index_dir: Path, *, in_subprocess: bool = False) -> LoadedPolicy:
    """Validate the policy and open (building if needed) its list index."""
    try:
        policy = load_policy(policy_path)
        cats = [c.sources for c in policy.categories.values()]
        index_path = build_index(cats, index_dir, in_subprocess=in_subprocess)
        index = ListIndex.open(index_path)
    except (PolicyError, ListSourceError) as exc:
        raise PolicyLoadError(str(exc)) from exc
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
            if raw and self.runtime.is_relevant(Path(os.fsdecode(raw))):
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
    ) -> None:
        self.policy_path = Path(policy_path).resolve()
        self.var_dir = Path(var_dir)
        self.index_dir = self.var_dir / "index"
        self.status_path = self.var_dir / "run" / "status.json"
        self.on_reload = on_reload
        self.on_error = on_error
        self.current: LoadedPolicy | None = None
        self.previous: LoadedPolicy | None = None
        self.last_error: dict[str, Any] | None = None
        self.reloads = 0
        self._watched: set[Path] = set()
        self._observer: Any = None
        self._watches: dict[Path, Any] = {}
        self._reload_lock = threading.Lock()  # reloads run one at a time, newest last
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self) -> LoadedPolicy:
        """Load at start-up; raises PolicyLoadError so the gateway refuses to start."""
        loaded = load_all(self.policy_path, self.index_dir, in_subprocess=True)
        self._install(loaded)
        return loaded

    def watch(self) -> None:
        """Watch the folders of every policy and list file (one observer, kept running)."""
        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        self._sync_watches()

    def _sync_watches(self) -> None:
        # Adjust the running observer in place: replacing it would lose the events
        # that arrive in between (a second edit made during a reload).
        folders = {p if p.is_dir() else p.parent for p in self._watched}
        for folder in folders - set(self._watches):
            self._watches[folder] = self._observer.schedule(
                _Events(self), str(folder), recursive=False
            )
        for folder in set(self._watches) - folders:
            self._observer.unschedule(self._watches.pop(folder))

    def stop_watching(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
            self._watches.clear()
        if self._timer is not None:
            self._timer.cancel()

    def is_relevant(self, path: Path) -> bool:
        path = path.resolve() if path.exists() else path.absolute()
        return path in self._watched or path.parent in self._watched

    def schedule_reload(self) -> None:
        """Debounce bursts of file events (editors write in several steps)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(DEBOUNCE_SECONDS, self.reload)
            self._timer.daemon = True
            self._timer.start()

    def reload(self) -> bool:
        """Load a new policy beside the old one and swap; keep the old one on failure."""
        with self._reload_lock:
            return self._reload()

    def _reload(self) -> bool:
        started = time.monotonic()
        try:
            loaded = load_all(self.policy_path, self.index_dir, in_subprocess=True)
        except PolicyLoadError as exc:
            self.last_error = {"at": _now(), "message": str(exc)}
            logger.error("Policy reload failed; the last good policy stays in force.\n%s", exc)
            self._write_status()
            if self.on_error:
                self.on_error(str(exc))
            return False
        self._install(loaded)
        self.reloads += 1
        logger.info("Policy reloaded in %.2f s (%s)", time.monotonic() - started, self.policy_path)
        if self.on_reload:
            try:
                self.on_reload(loaded)  # e.g. the audit record; the new policy is in force already
            except Exception:
                logger.exception("After the policy reload, recording it failed")
        if self._observer is not None:
            self._sync_watches()  # the set of list files may have changed
        return True

    def _install(self, loaded: LoadedPolicy) -> None:
        self.previous, self.current = self.current, loaded  # in-flight requests keep theirs
        self.last_error = None
        self._watched = {p.resolve() for p in watched_paths(loaded.policy)}
        self._write_status()

    def status(self) -> dict[str, Any]:
        cur = self.current
        return {
            "pid": os.getpid(),
            "state": "error" if self.last_error else ("ok" if cur else "not loaded"),
            "policy": str(self.policy_path),
            "school": cur.policy.school if cur else None,
            "loaded_at": cur.loaded_at.isoformat(timespec="seconds") if cur else None,
            "list_entries": cur.index.entry_count if cur else 0,
            "profiles": sorted(cur.policy.profiles) if cur else [],
            "reloads": self.reloads,
            "last_error": self.last_error,
            "written_at": _now(),
        }

    def _write_status(self) -> None:
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2))
        os.replace(tmp, self.status_path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
