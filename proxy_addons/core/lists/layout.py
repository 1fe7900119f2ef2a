"""The list index file: its layout, identity and checksum, the errors that name damage, and
the index folder (one builder at a time, old files pruned).

The index is a memory-mapped hash table of every category list, shared by all worker processes.

Why this shape: the full UT1 collection is ~5 million entries. Python sets of that
size cost hundreds of MB in every worker; this index is one file (10 bytes per slot,
~80 MB for 5 million entries) that each worker maps read-only, so the page cache
holds a single copy and a reload is "build a new file, open it, swap one reference".
bench/list_index_bench.py measures build time, memory and lookups per second.

File layout (little-endian)::

    8 bytes  magic b"SGLIDX02"
    8 bytes  length of the JSON header (padded with spaces to a multiple of 8)
    8 bytes  checksum: zlib.crc32 of everything after these 24 bytes
    header   categories, list files ("tags"), counts, table geometry, expressions
    keys     uint64[table_len]  0 = empty slot
    tags     uint16[table_len]  index into header["tags"] = (category, list file)

Integrity: a damaged index must never read as "nothing is listed" (a file zeroed in
place has only empty slots). `ListIndex.open` (index.py) checks the checksum before serving
and `ListIndex.verify` checks a mapping again later; `open_index` (build.py) rebuilds a
damaged file.
A checksum cannot see a whole, valid index of other lists put under the current one's
name (copied, restored, swapped in): so every open for serving also compares the
header with what the policy's lists give (`Expected`: fingerprint, categories, list
files, and the entry counts the builder reported), and such a file is damage too.
crc32 because it is the cheapest check that sees any such damage: ~30 ms for an 80 MB
index (sha256 ~45 ms, blake2b ~90 ms; bench/list_index_bench.py prints the open time
with and without it). It guards against damage, not an attacker who can write var/.

A key is a 64-bit hash of the entry's UTF-8 bytes: crc32 in the high half, adler32
in the low half (both C calls, ~0.3 us; Python's hash() is randomised per process).
URL entries are hashed as b"u " + entry so they never meet domain keys. A key's home
slot is its top `bits` bits (the crc32 half); keys are laid out in ascending order
(linear probing with ordered runs), so a lookup stops at the first empty slot or at
the first larger key. Entries sharing a key (one domain in two categories) sit in
adjacent slots.

False positives: only a full 64-bit key collision matches a wrong name. adler32 is
weak on names this short (8 million real and synthetic host names gave only 3.0
million distinct adler32 values, ~22 bits; of their 7,262 crc32-equal pairs none was
adler32-equal), so count on ~54 effective bits: with 5 million entries each probe
of an unlisted name collides with probability ~5e6 / 2**54 = 3e-10, about one
wrong match per billion host lookups. A collision can only over-block (report an
entry for a name not listed), never let a listed entry through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import subprocess
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from proxy_addons.core.lists.sources import (
    FORMAT_VERSION,
    ListSource,
    ListSourceError,
    fingerprint,
    source_files,
)

logger = logging.getLogger(__name__)

MAGIC = b"SGLIDX02"
LAYOUT_VERSION = 2
PREFIX = 24  # magic, header length, checksum
_CRC_CHUNK = 8 << 20
KEEP_INDEXES = 2
_STALE_TMP_SECONDS = 3600.0

URL_NS = b"u "
HOSTMARK_NS = b"h "
URL_CRC, URL_ADLER = zlib.crc32(URL_NS), zlib.adler32(URL_NS)
MARK_CRC, MARK_ADLER = zlib.crc32(HOSTMARK_NS), zlib.adler32(HOSTMARK_NS)


class IndexDamaged(ListSourceError):
    """The index file is not what was written (checksum, size or header): never serve it."""


class TransientListError(ListSourceError):
    """A failure that may pass with nothing changed: the index could not be written (a
    full disk, a read-only folder), the builder ran out of time or memory. A reload that
    hit one is tried again (core/policy/runtime.py)."""


# Errors that can go away with nothing in the policy or lists changing.
_PASSING_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
        errno.EAGAIN,
        errno.EBUSY,
        errno.ETIMEDOUT,
    }
)


def error_may_pass(exc: BaseException) -> bool:
    """Whether a failed load may succeed later unchanged: out of space, unreadable, busy.

    Follows the chain of causes, so a ListSourceError raised while handling an OSError
    counts as that OSError.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TransientListError | MemoryError | subprocess.TimeoutExpired):
            return True
        if isinstance(cur, OSError) and cur.errno in _PASSING_ERRNOS:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


@dataclass(frozen=True)
class CategorySources:
    """The lists that make up one category (merged into it)."""

    category: str
    sources: tuple[ListSource, ...]


@dataclass(frozen=True)
class Expected:
    """What the header of the index of given lists says. A valid index of other lists
    under this one's name passes the checksum; comparing this finds it."""

    fingerprint: str
    categories: tuple[str, ...]
    files: tuple[tuple[int, str], ...]  # the header's tags: (category, list file)
    counts: tuple[int, int, int] | None = None  # domains, urls, expressions, once built

    @classmethod
    def of(cls, cats: Sequence[CategorySources]) -> Expected:
        """From the lists (raises ListSourceError if one cannot be read)."""
        files = tuple(
            (ci, str(path))
            for ci, cat in enumerate(cats)
            for src in cat.sources
            for _what, path in source_files(src)
        )
        return cls(index_fingerprint(cats), tuple(c.category for c in cats), files)

    @classmethod
    def of_header(cls, path: Path, header: dict[str, Any]) -> Expected:
        """What an index file's header says; IndexDamaged if it does not say it all."""
        try:
            return cls(
                str(header["fingerprint"]),
                tuple(str(c) for c in header["categories"]),
                tuple((int(c), str(f)) for c, f in header["tags"]),
                (
                    int(header["domain_count"]),
                    int(header["url_count"]),
                    int(header["expression_count"]),
                ),
            )
        except (KeyError, TypeError, ValueError):
            raise IndexDamaged(
                f"the list index {path} is damaged: its header is incomplete"
            ) from None

    def mismatch(self, path: Path, found: Expected) -> str | None:
        """None if `found` (a file's header) is of these lists, else what differs."""
        if found.fingerprint != self.fingerprint:
            what = f"fingerprint {found.fingerprint}, the policy's lists give {self.fingerprint}"
        elif found.categories != self.categories:
            what = f"categories {list(found.categories)}, expected {list(self.categories)}"
        elif found.files != self.files:
            what = "other list files than the policy's"
        elif self.counts is not None and found.counts != self.counts:
            what = f"{found.counts} entries (domains, urls, expressions), built {self.counts}"
        else:
            return None
        return f"the list index {path} is damaged: it is an index of other lists ({what})"


@dataclass(frozen=True, slots=True)
class Match:
    """A list entry that covers a request: which category, which entry, which file."""

    category: str
    entry: str  # the matched domain, url prefix or expression
    source: str  # the list file it came from


def read_header(path: Path) -> tuple[dict[str, Any], int, int] | None:
    """(header, offset of the table, checksum) of an index file; None if not a complete
    index of ours. Reads the header only: `verify_file` checks the contents."""
    try:
        with open(path, "rb") as fh:
            return header_of(fh)
    except OSError:
        return None


def header_of(fh: BinaryIO) -> tuple[dict[str, Any], int, int] | None:
    try:
        head = fh.read(PREFIX)
        if len(head) != PREFIX or head[:8] != MAGIC:
            return None
        length = int.from_bytes(head[8:16], "little")
        size = os.fstat(fh.fileno()).st_size
        if length > size - PREFIX:  # a damaged length: never try to read exabytes
            return None
        header: dict[str, Any] = json.loads(fh.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format") != [FORMAT_VERSION, LAYOUT_VERSION]:
        return None
    try:
        if size != PREFIX + length + 10 * int(header.get("table_len", 0)):
            return None
    except (TypeError, ValueError):
        return None
    return header, PREFIX + length, int.from_bytes(head[16:24], "little")


def crc_of(data: memoryview | mmap.mmap, start: int = PREFIX) -> int:
    """crc32 of data[start:], a chunk at a time (zlib lets other threads run meanwhile)."""
    view = memoryview(data)
    try:
        crc = 0
        for pos in range(start, len(view), _CRC_CHUNK):
            crc = zlib.crc32(view[pos : pos + _CRC_CHUNK], crc)
        return crc
    finally:
        view.release()


def index_fingerprint(cats: Sequence[CategorySources]) -> str:
    """Names an index: the layout version, each category's name and its sources' fingerprint."""
    parts = [LAYOUT_VERSION, [[c.category, fingerprint(c.sources)] for c in cats]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def problem_at(target: Path, expected: Expected) -> str | None:
    """None if `target` has the header of an index of the `expected` lists, else why not
    (its contents are checked by ListIndex.open)."""
    found = read_header(target)
    if found is None:
        if not target.exists():
            return f"there is no list index {target}"
        return f"the list index {target} is damaged: its header is not an index's of this version"
    try:
        return expected.mismatch(target, Expected.of_header(target, found[0]))
    except IndexDamaged as exc:
        return str(exc)


def index_path(index_dir: Path, fp: str) -> Path:
    return Path(index_dir) / f"lists-{fp}.idx"


def touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)  # newest again, so pruning keeps the index in use


def checksum_mismatch(path: Path, stored: int, actual: int) -> str:
    return (
        f"the list index {path} is damaged: its checksum does not match its contents "
        f"(written {stored:08x}, now {actual:08x})"
    )


def index_folder(index_dir: Path) -> Path:
    """The index folder, created if need be (a failure may pass: a full or read-only disk)."""
    index_dir = Path(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransientListError(
            f"cannot create the index folder {index_dir}: {exc.strerror}"
        ) from None
    return index_dir


# The index folder: one builder at a time, old files pruned, renames made durable.


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut (the new name reaches the disk)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked(index_dir: Path) -> Iterator[None]:
    """One builder per index folder; others wait, then reuse what it built."""
    with open(index_dir / ".lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def prune_indexes(index_dir: Path, keep: Path) -> None:
    """Drop all but the newest KEEP_INDEXES indexes (workers still mapping one keep it)."""
    found = []
    for p in index_dir.glob("lists-*.idx"):
        with contextlib.suppress(OSError):
            found.append((p.stat().st_mtime, p))
    found.sort(reverse=True)
    old = [p for _m, p in found if p != keep][KEEP_INDEXES - 1 :]
    now = time.time()
    for p in index_dir.glob(".lists-*.tmp"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                old.append(p)
    for p in old:
        with contextlib.suppress(OSError):
            p.unlink()
            logger.debug("removed old list index %s", p)
