"""What a doctor's check finds (OK, WARN or FAIL, and what to do), and how checks run
commands (`Runner`, so a caller can run them elsewhere, e.g. inside a network namespace)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum


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


def summary(checks: Sequence[Check]) -> tuple[int, int, int]:
    counts = {level: sum(c.level is level for c in checks) for level in Level}
    return counts[Level.OK], counts[Level.WARN], counts[Level.FAIL]
