"""The access log as JSON lines: an append-only file that rotates, and its rotated files."""

from __future__ import annotations

import errno
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.record.access_records import AccessRecord

JSON_FILE = Path("log") / "access.jsonl"  # under the gateway's var folder


def rotated_files(path: Path) -> list[Path]:
    """`access.jsonl.1`, `.2`, ... that exist, newest first."""
    found = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


def newest_time(path: Path) -> datetime | None:
    """The time of the last record in a JSON lines file (its mtime if that can't be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().splitlines()
        for line in reversed(tail):
            if line.strip():
                value = datetime.fromisoformat(json.loads(line)["time"])
                return value if value.tzinfo else value.replace(tzinfo=UTC)
        return None
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        try:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except FileNotFoundError:
            return None


def purge_files(path: Path, before: datetime) -> list[Path]:
    """Delete rotated files whose newest record is older than `before`; returns them."""
    removed = []
    for p in rotated_files(path):
        newest = newest_time(p)
        if newest is not None and newest < before:
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return removed


class JsonLines:
    """An append-only JSON lines file that rotates to `.1`, `.2`, ... at `max_bytes`.

    `write` queues a line and `flush` writes the queue in one system call, unbuffered,
    so what could not be written is known exactly: `flush` returns how many records
    were lost (a full disk). A line cut short is finished at the next flush, so the
    file stays one whole record a line.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self.error: OSError | None = None  # why the last flush lost records
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: io.FileIO | None = None
        self._open()
        self._lines: list[bytes] = []
        self._rest = b""  # the end of a line cut short by a full disk

    def _open(self) -> None:
        self._file = io.FileIO(self.path, "a")
        self._size = os.fstat(self._file.fileno()).st_size

    def write(self, record: AccessRecord) -> int:
        """Queue one record; returns how many records a rotation's flush lost (usually 0)."""
        line = json.dumps(record.as_dict(), ensure_ascii=False, separators=(",", ":"))
        data = (line + "\n").encode()
        lost = 0
        if self.max_bytes > 0 and self._size and self._size + len(data) > self.max_bytes:
            lost = self.flush() + (1 if self._rest else 0)  # a cut line stays cut
            try:
                self.rotate()
            except OSError as exc:
                self.error = exc  # the new file is opened at the next flush
        self._lines.append(data)
        self._size += len(data)
        return lost

    def flush(self) -> int:
        """Write the queued records; returns how many of them could not be written."""
        lines, self._lines = self._lines, []
        if not lines and not self._rest:
            return 0
        data = self._rest + b"".join(lines)
        done = self._write_out(data)
        if done == len(data):
            self._rest, self.error = b"", None
            return 0
        pos = len(self._rest)
        lost: list[bytes] = []
        if done < pos:  # not even the cut line's end
            self._rest = self._rest[done:]
            lost = lines
        else:
            self._rest = b""
            for i, line in enumerate(lines):
                if done < pos + len(line):
                    if done > pos:  # cut short: finish it next time, lose the ones after
                        self._rest, i = line[done - pos :], i + 1
                    lost = lines[i:]
                    break
                pos += len(line)
        self._size -= sum(map(len, lost))
        return len(lost)

    def _write_out(self, data: bytes) -> int:
        """Bytes of `data` written before an error stopped it (kept in `error`)."""
        done = 0
        try:
            if self._file is None:
                self._open()  # a rotation could not open the new file: try again
            assert self._file is not None
            view = memoryview(data)
            while done < len(data):
                n = self._file.write(view[done:])
                if not n:
                    raise OSError(errno.EIO, "nothing written")
                done += n
        except OSError as exc:
            self.error = exc
        return done

    def rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for old in rotated_files(self.path):
            n = int(old.name.rsplit(".", 1)[1])
            if n >= self.backups:
                old.unlink(missing_ok=True)
        for n in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._rest = b""  # a cut line's end belongs to the file just rotated away
        self._open()

    def drop_if_older(self, before: datetime) -> bool:
        """Empty the current file when even its newest record is older than `before`."""
        self.flush()
        newest = newest_time(self.path)
        if newest is None or newest >= before:
            return False
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
        self._rest = b""
        self._open()
        return True

    def close(self) -> int:
        """Write what is queued and close; returns how many records could not be written."""
        lost = self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        return lost
