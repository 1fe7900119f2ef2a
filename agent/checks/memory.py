"""What the checks remember between reports, in the agent's state folder (`memory.json`).

A device can't always say how long a security update has waited (apt and softwareupdate
don't say when an update was published), but it can say when it first saw one pending; and
"new software since the last report" needs the last report's list. Both are remembered
here. The run loop saves the memory after each report it queues; `schoolgate-agent check`
reads it but never saves, so a check by hand doesn't move "since the last report".
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MEMORY_FILE = "memory.json"
_MAX_KEYS = 5000  # per kind; a device with more is remembered in part, never fails


class Memory:
    """First-seen times of pending things, the last reported sets, and answers kept while
    what they were read from is unchanged, by kind."""

    def __init__(self, data: Any = None) -> None:
        self.first: dict[str, dict[str, str]] = {}
        self.sets: dict[str, list[str]] = {}
        self.kept: dict[str, dict[str, Any]] = {}
        if isinstance(data, dict):
            for kind, entry in (data.get("kept") or {}).items():
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    self.kept[str(kind)] = entry
            for kind, seen in (data.get("first_seen") or {}).items():
                if isinstance(seen, dict):
                    self.first[str(kind)] = {
                        str(k): str(v) for k, v in list(seen.items())[:_MAX_KEYS]
                    }
            for kind, items in (data.get("sets") or {}).items():
                if isinstance(items, list):
                    self.sets[str(kind)] = [str(i) for i in items[:_MAX_KEYS]]

    @classmethod
    def load(cls, state_dir: Path | None) -> Memory:
        """The saved memory; an empty one when there is none or it is damaged."""
        if state_dir is None:
            return cls()
        try:
            return cls(json.loads((Path(state_dir) / MEMORY_FILE).read_text()))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            logger.warning("check memory %s unreadable, starting afresh: %s", MEMORY_FILE, exc)
            return cls()

    def save(self, state_dir: Path) -> None:
        """Written readable by the agent only (0600, like its token): whoever could write it
        could make an old pending update look new, and it lists the device's software.
        A file left behind by someone else (a link, another owner) is replaced, not
        followed."""
        path = Path(state_dir) / MEMORY_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        data = json.dumps(
            {"first_seen": self.first, "sets": self.sets, "kept": self.kept}, sort_keys=True
        )
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def recall(self, kind: str, key: str, now: datetime, max_age: timedelta) -> Any:
        """The answer kept under `key` (a fingerprint of what it was read from) if no older
        than `max_age`; None otherwise. A damaged entry is None: the command runs again."""
        entry = self.kept.get(kind)
        if entry is None or entry.get("key") != key:
            return None
        at = _parse(entry.get("at") if isinstance(entry.get("at"), str) else None)
        if at is None or not timedelta(0) <= now - at <= max_age:
            return None
        return entry.get("value")

    def keep(self, kind: str, key: str, now: datetime, value: Any) -> None:
        self.kept[kind] = {"key": key, "at": now.isoformat(), "value": value}

    def first_seen(self, kind: str, keys: Iterable[str], now: datetime) -> dict[str, datetime]:
        """When each key was first seen (now for a new one); keys gone are forgotten."""
        known = self.first.get(kind, {})
        kept: dict[str, str] = {}
        out: dict[str, datetime] = {}
        for key in list(dict.fromkeys(keys))[:_MAX_KEYS]:
            when = _parse(known.get(key)) or now
            kept[key] = when.isoformat()
            out[key] = when
        self.first[kind] = kept
        return out

    def previous(self, kind: str) -> frozenset[str] | None:
        """The set remembered at the last report; None when there was none."""
        items = self.sets.get(kind)
        return None if items is None else frozenset(items)

    def remember(self, kind: str, items: Iterable[str]) -> None:
        self.sets[kind] = sorted(set(items))[:_MAX_KEYS]


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
