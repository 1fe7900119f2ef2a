"""The running gateway's state, for `schoolgate status` and `schoolgate doctor`.

The gateway writes var/run/status.json, but a full disk can stop that: the state it
keeps in memory is then only on its metrics endpoint's /status (metrics_addon.py). So
the live /status is asked first (the address the status file names, or the default
metrics port), and the file is the fallback when no gateway answers. A live answer
counts only if it is about the same var folder: another gateway on the default port is
not this one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUS_FILE = Path("run") / "status.json"
DEFAULT_STATUS_URL = "http://127.0.0.1:9464/status"  # the Metrics add-on's default port


@dataclass(frozen=True)
class Found:
    status: dict[str, Any]
    source: str  # the URL or the file it came from
    live: bool


def read_status(var: Path, url: str | None = None, timeout: float = 2.0) -> Found | None:
    """The freshest status of the gateway using `var`, or None if there is none."""
    path = var / STATUS_FILE
    try:
        written: dict[str, Any] | None = json.loads(path.read_text())
    except (OSError, ValueError):
        written = None
    urls = [url] if url else []
    if written and written.get("status_url"):
        urls.append(str(written["status_url"]))
    urls.append(DEFAULT_STATUS_URL)
    for candidate in dict.fromkeys(urls):
        live = _fetch(candidate, timeout)
        if live is not None and _same_var(live, var):
            return Found(live, candidate, True)
    return Found(written, str(path), False) if written is not None else None


def _fetch(url: str, timeout: float) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            found = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return found if isinstance(found, dict) else None


def _same_var(status: dict[str, Any], var: Path) -> bool:
    named = status.get("var")
    return bool(named) and Path(str(named)).resolve() == var.resolve()


def problems(status: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(what stops the gateway doing its job, what to look at), in words for people."""
    bad: list[str] = []
    look: list[str] = []
    index = status.get("list_index") or {}
    damage = index.get("last_damage")
    if index.get("state") == "damaged":
        why = damage["message"] if damage else "its checksum does not match"
        bad.append(
            f"the list index is damaged; every request is blocked until it is rebuilt: {why}"
        )
    elif damage:
        look.append(
            f"a damaged list index was found at {damage['at']} and rebuilt at "
            f"{damage['rebuilt_at']}: {damage['message']} (check the disk)"
        )
    err = status.get("last_error")
    if err:
        attempts = err.get("attempts", 1)
        retry = "; tried again until it succeeds" if err.get("retrying") else ""
        bad.append(
            f"the last policy reload failed at {err['at']} (attempt {attempts}, failing since "
            f"{err.get('since', err['at'])}{retry}); the previous policy is still in force:\n"
            f"{err['message']}"
        )
    unwritten = status.get("status_file_error")
    if unwritten:
        bad.append(
            f"the status file cannot be written (since {unwritten.get('since')}): "
            f"{unwritten.get('message')}; is the disk full?"
        )
    access = status.get("access_log") or {}
    lost = access.get("lost") or {}
    if any(lost.values()):
        counts = ", ".join(f"{sink} {n}" for sink, n in lost.items() if n)
        look.append(
            f"access log records were lost since the gateway started ({counts}): "
            f"{access.get('last_loss')}"
        )
    return bad, look
