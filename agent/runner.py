"""One door to the device: commands and files go through a Runner.

Probes never call subprocess or open() themselves, so the same probe code runs for
real (`SystemRunner`) and on recorded output from real machines (`FixtureRunner`).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

NOT_FOUND = 127  # like a shell: the command does not exist here
TIMED_OUT = 124  # like coreutils timeout(1)
MAX_READ = 1024 * 1024


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner(Protocol):
    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult: ...

    def read(self, path: str) -> str | None: ...

    def listdir(self, path: str) -> list[str] | None: ...


def _under(root: Path, path: str) -> Path:
    """Paths are absolute on the device; the root moves them (for a mounted image or fixtures)."""
    return root / path.lstrip("/")


def _read(p: Path) -> str | None:
    try:
        with p.open("rb") as fh:
            return fh.read(MAX_READ).decode("utf-8", errors="replace")
    except OSError:
        return None


def _listdir(p: Path) -> list[str] | None:
    try:
        return sorted(os.listdir(p))
    except OSError:
        return None


class SystemRunner:
    """Runs real commands (never through a shell) and reads files under `root`."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            return CommandResult(NOT_FOUND, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return CommandResult(TIMED_OUT, "", f"{argv[0]}: timed out after {timeout:g} s")
        except OSError as exc:
            return CommandResult(NOT_FOUND, "", f"{argv[0]}: {exc}")
        return CommandResult(
            done.returncode,
            done.stdout.decode("utf-8", errors="replace"),
            done.stderr.decode("utf-8", errors="replace"),
        )

    def read(self, path: str) -> str | None:
        return _read(_under(self.root, path))

    def listdir(self, path: str) -> list[str] | None:
        return _listdir(_under(self.root, path))


class FixtureRunner:
    """Serves output recorded on real machines: `<folder>/commands/index.json` + `<folder>/root/`.

    The index maps the argv joined by spaces to a file name (stdout, exit 0) or to
    {"stdout": file, "stderr": file, "rc": n}. Unrecorded commands behave as missing.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.root = self.folder / "root"
        index = self.folder / "commands" / "index.json"
        self.index: dict[str, str | dict[str, object]] = (
            json.loads(index.read_text()) if index.exists() else {}
        )
        self.calls: list[list[str]] = []

    def _text(self, name: object) -> str:
        if not isinstance(name, str):
            return ""
        return (self.folder / "commands" / name).read_text(encoding="utf-8", errors="replace")

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        self.calls.append(argv)
        entry = self.index.get(" ".join(argv))
        if entry is None:
            return CommandResult(NOT_FOUND, "", f"{argv[0]}: command not found")
        if isinstance(entry, str):
            return CommandResult(0, self._text(entry), "")
        rc = entry.get("rc", 0)
        return CommandResult(
            rc if isinstance(rc, int) else 1,
            self._text(entry.get("stdout")),
            self._text(entry.get("stderr")),
        )

    def read(self, path: str) -> str | None:
        return _read(_under(self.root, path))

    def listdir(self, path: str) -> list[str] | None:
        return _listdir(_under(self.root, path))
