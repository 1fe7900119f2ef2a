"""The running gateway's state, for `schoolgate status` and `schoolgate doctor`.

The gateway writes var/run/status.json, but a full disk can stop that: the state it
keeps in memory is then only on its metrics endpoint's /status (gateway/addons/metrics.py). So
the live /status is asked first (the address the status file names, or the default
metrics port), and the file is the fallback when no gateway answers. A live answer
counts only if it is about the same var folder: another gateway on the default port is
not this one.

Neither is trusted blindly. A status of the wrong shape (hand-edited, damaged, from
something else) is a StatusError naming the file or URL and the field, never a
traceback. A gateway is "running" when its live /status answers for this var folder, or
when the status file's pid is a Schoolgate gateway process (by its command line) that
started before the file was written: a live pid alone may be any other program that
got the number since.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

STATUS_FILE = Path("run") / "status.json"
DEFAULT_STATUS_URL = "http://127.0.0.1:9464/status"  # the Metrics add-on's default port


STARTED_SLACK = 2.0  # seconds: written_at has whole seconds; a process's start time not


class StatusError(ValueError):
    """A status file or live answer that is not what a gateway writes (names where, and
    which field)."""


@dataclass(frozen=True)
class Found:
    status: dict[str, Any]  # checked by check_status: the fields below have their types
    source: str  # the URL or the file it came from
    live: bool
    file_problem: str | None = None  # the status file is damaged (a live answer was used)
    var: Path | None = None  # the folder whose status file it is

    @property
    def written_at(self) -> datetime:
        return _when(self.status["written_at"])


def read_status(var: Path, url: str | None = None, timeout: float = 2.0) -> Found | None:
    """The freshest status of the gateway using `var`, or None if there is none.

    Raises StatusError when the status file (and no live gateway) or a live answer for
    this var folder is not a gateway's status.
    """
    path = var / STATUS_FILE
    written: dict[str, Any] | None = None
    problem: str | None = None
    try:
        written = check_status(json.loads(path.read_text()), str(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        problem = f"{path}: cannot be read: {exc.strerror or exc}"
    except StatusError as exc:
        problem = str(exc)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        problem = f"{path}: not JSON ({exc})"
    urls = [url] if url else []
    if written and written.get("status_url"):
        urls.append(str(written["status_url"]))
    urls.append(DEFAULT_STATUS_URL)
    for candidate in dict.fromkeys(urls):
        live = _fetch(candidate, timeout)
        if live is not None and _same_var(live, var):
            return Found(check_status(live, candidate), candidate, True, problem)
    if problem is not None:
        raise StatusError(problem)
    return Found(written, str(path), False, var=var) if written is not None else None


def _fetch(url: str, timeout: float) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            found = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return found if isinstance(found, dict) else None


def _same_var(status: dict[str, Any], var: Path) -> bool:
    named = status.get("var")
    return isinstance(named, str) and bool(named) and Path(named).resolve() == var.resolve()


# -- the shape of a status -------------------------------------------------------------

_STATES = ("ok", "error", "blocking", "not loaded")
_INDEX_STATES = ("ok", "damaged")  # or null: no index yet


def check_status(data: object, source: str) -> dict[str, Any]:
    """`data` if it has the shape PolicyRuntime.status() writes, else StatusError naming
    `source` and the field: everything status, doctor and problems() read is checked."""
    shape = _Shape(source)
    top = shape.obj(data, "the status")
    shape.field(top, "pid", int, need=True, test=lambda v: v > 0, what="a process id")
    shape.field(top, "state", str, need=True, test=_STATES.__contains__, what=str(_STATES))
    shape.field(top, "written_at", str, need=True, test=_is_time, what="a time with its zone")
    shape.field(top, "var", str, need=True, what="a folder")
    shape.field(top, "profiles", list, need=True, test=_strings, what="a list of names")
    for name in ("policy", "school", "status_url"):
        shape.field(top, name, str, what="text")
    shape.field(top, "loaded_at", str, test=_is_time, what="a time with its zone")
    for name in ("list_entries", "reloads", "failed_reloads"):
        shape.field(top, name, int, test=_is_count, what="a count")
    index = shape.field(top, "list_index", dict, what="an object")
    if index:
        known = _INDEX_STATES
        shape.field(index, "state", str, test=known.__contains__, what=str(known), at="list_index")
        shape.field(index, "path", str, at="list_index", what="a file")
        shape.field(index, "verified_at", str, at="list_index", what="a time")
        shape.field(index, "damage_found", int, test=_is_count, at="list_index", what="a count")
        damage = shape.field(index, "last_damage", dict, at="list_index", what="an object")
        if damage:
            where = "list_index.last_damage"
            shape.field(damage, "at", str, need=True, at=where, what="a time")
            shape.field(damage, "message", str, need=True, at=where, what="text")
            shape.field(damage, "rebuilt_at", str, at=where, what="a time")
    error = shape.field(top, "last_error", dict, what="an object")
    if error:
        shape.field(error, "at", str, need=True, at="last_error", what="a time")
        shape.field(error, "message", str, need=True, at="last_error", what="text")
        shape.field(error, "since", str, at="last_error", what="a time")
        shape.field(error, "attempts", int, test=_is_count, at="last_error", what="a count")
        shape.field(error, "retrying", bool, at="last_error", what="true or false")
    unwritten = shape.field(top, "status_file_error", dict, what="an object")
    if unwritten:
        shape.field(unwritten, "since", str, at="status_file_error", what="a time")
        shape.field(unwritten, "message", str, at="status_file_error", what="text")
    access = shape.field(top, "access_log", dict, what="an object")
    if access:
        shape.field(access, "lost", dict, at="access_log", test=_counts, what="counts by sink")
        shape.field(access, "last_loss", str, at="access_log", what="text")
    return top


class _Shape:
    def __init__(self, source: str) -> None:
        self.source = source

    def obj(self, data: object, what: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise StatusError(
                f"{self.source}: {what} is {_show(data)}, not a JSON object: not a "
                "Schoolgate status"
            )
        return data

    def field(
        self,
        obj: dict[str, Any],
        name: str,
        kind: type,
        *,
        what: str,
        need: bool = False,
        test: Callable[[Any], bool] | None = None,
        at: str = "",
    ) -> Any:
        """obj[name] if it is a `kind` (None or missing allowed unless `need`) that passes
        `test`; else StatusError naming the file and the field."""
        label = f"{at}.{name}" if at else name
        value = obj.get(name)
        if value is None:
            if need:
                raise StatusError(
                    f"{self.source}: field '{label}' is missing: not a gateway's status"
                )
            return None
        exact = kind is not int or not isinstance(value, bool)  # true is not a count
        if not (isinstance(value, kind) and exact and (test is None or test(value))):
            raise StatusError(f"{self.source}: field '{label}' is {_show(value)}, not {what}")
        return value


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str | int | float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strings(value: list[Any]) -> bool:
    return all(isinstance(v, str) for v in value)


def _counts(value: dict[str, Any]) -> bool:
    return all(_is_count(n) for n in value.values())


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_time(value: str) -> bool:
    try:
        return _when(value).tzinfo is not None
    except ValueError:
        return False


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- is it running? ----------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    running: bool
    why: str  # for people: how that was decided


def is_running(found: Found) -> Running:
    """Whether the gateway that gave this status is running: its live /status answered,
    or the status file's pid is a gateway process that started before the file was
    written (not any program that got the pid since)."""
    if found.live:
        return Running(True, f"its /status answers at {found.source}")
    if found.var is not None and not _same_var(found.status, found.var):
        named = found.status["var"]
        return Running(False, f"the status file is about the var folder {named}, not this one")
    return gateway_process(int(found.status["pid"]), found.written_at)


def gateway_process(pid: int, written_at: datetime | None = None) -> Running:
    """Whether `pid` is a Schoolgate gateway (schoolgate run, or mitmdump with the
    gateway's add-on), started before `written_at` if given."""
    try:
        proc = psutil.Process(pid)
        argv, started = proc.cmdline(), proc.create_time()
    except psutil.NoSuchProcess:  # also a zombie: it has ended
        return Running(False, f"pid {pid} is not running")
    except (psutil.Error, OSError) as exc:
        return Running(False, f"pid {pid} cannot be checked ({exc.__class__.__name__})")
    command = " ".join(os.path.basename(a) for a in argv[:3]) or "a kernel thread"
    if not _gateway_argv(argv):
        return Running(False, f"pid {pid} is another program ({command}), not the gateway")
    if written_at is not None and started > written_at.timestamp() + STARTED_SLACK:
        begun = datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")
        return Running(
            False,
            f"pid {pid} ({command}) started at {begun}, after the status was written: "
            "another process, not the gateway that wrote it",
        )
    return Running(True, f"pid {pid} is a gateway process ({command})")


def _gateway_argv(argv: list[str]) -> bool:
    """`schoolgate run ...`, `python -m proxy_addons.cli.main run ...`, or mitmdump (or
    mitmproxy) loading proxy_addons/gateway/chain.py; possibly behind the Python interpreter."""
    for i, arg in enumerate(argv[:3]):
        name = os.path.basename(arg)
        rest = argv[i + 1 :]
        if name == "schoolgate" or (arg == "-m" and rest[:1] == ["proxy_addons.cli.main"]):
            words = rest[1:] if arg == "-m" else rest
            return words[:1] == ["run"]
        if name in ("mitmdump", "mitmproxy", "mitmweb"):
            script = os.path.join("proxy_addons", "gateway", "chain.py")
            return any(a.endswith(script) for a in rest)
    return False


def age(when: datetime, now: datetime | None = None) -> str:
    """'3 min ago' (or 'in the future', a clock to look at)."""
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < -STARTED_SLACK:
        return "in the future: check the clock"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def found_problems(found: Found) -> tuple[list[str], list[str]]:
    """problems() of a found status, and a damaged status file beside a live answer."""
    bad, look = problems(found.status)
    if found.file_problem:
        look.insert(0, f"the status file is not a gateway's status: {found.file_problem}")
    return bad, look


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
            f"{damage.get('rebuilt_at')}: {damage['message']} (check the disk)"
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
