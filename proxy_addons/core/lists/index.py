"""A memory-mapped hash index of every category list, shared by all worker processes.

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
place has only empty slots). `ListIndex.open` checks the checksum before serving and
`ListIndex.verify` checks a mapping again later; `open_index` rebuilds a damaged file.
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
import itertools
import json
import logging
import math
import mmap
import os
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from proxy_addons.core.hosts import key_host, match_key
from proxy_addons.core.lists.sources import (
    FORMAT_VERSION,
    ListSource,
    ListSourceError,
    compile_expression,
    domain_batches,
    fingerprint,
    iter_urls,
    read_expressions,
    source_files,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

logger = logging.getLogger(__name__)

MAGIC = b"SGLIDX02"
LAYOUT_VERSION = 2
PREFIX = 24  # magic, header length, checksum
LOAD_FACTOR = 0.65
KEEP_INDEXES = 2
MARKER_TAG = 0xFFFF  # url-host markers: "this host has url entries"
MAX_TAGS = MARKER_TAG
BUILD_TIMEOUT = 900.0
_BATCH = 1 << 16
_STALE_TMP_SECONDS = 3600.0
_CRC_CHUNK = 8 << 20
_HIT_CACHE_SIZE = 1 << 16

_URL_NS = b"u "
_HOSTMARK_NS = b"h "
_URL_CRC, _URL_ADLER = zlib.crc32(_URL_NS), zlib.adler32(_URL_NS)
_MARK_CRC, _MARK_ADLER = zlib.crc32(_HOSTMARK_NS), zlib.adler32(_HOSTMARK_NS)
_URL_SEP = re.compile(rb"[/?]")


class IndexDamaged(ListSourceError):
    """The index file is not what was written (checksum, size or header): never serve it."""


class TransientListError(ListSourceError):
    """A failure that may pass with nothing changed: the index could not be written (a
    full disk, a read-only folder), the builder ran out of time or memory. A reload that
    hit one is tried again (policy_runtime.py)."""


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


# --------------------------------------------------------------------------- build


def _keys(datas: list[bytes], crc0: int, adler0: int) -> npt.NDArray[np.uint64]:
    import numpy as np

    n = len(datas)
    crc = np.fromiter(map(zlib.crc32, datas, itertools.repeat(crc0)), np.uint64, n)
    adl = np.fromiter(map(zlib.adler32, datas, itertools.repeat(adler0)), np.uint64, n)
    return (crc << np.uint64(32)) | adl  # type: ignore[no-any-return]


@dataclass
class _Collected:
    categories: list[str]
    tags: list[tuple[int, str]] = field(default_factory=list)  # (category index, list file)
    url_tags: set[int] = field(default_factory=set)
    keys: list[npt.NDArray[np.uint64]] = field(default_factory=list)
    tag_ids: list[npt.NDArray[np.uint16]] = field(default_factory=list)
    expressions: list[tuple[int, list[str]]] = field(default_factory=list)
    url_hosts: set[str] = field(default_factory=set)
    single_label: bool = False  # any one-label domain entry: match_host must probe TLDs


def _add(col: _Collected, keys: npt.NDArray[np.uint64], tag: int) -> None:
    import numpy as np

    col.keys.append(keys)
    col.tag_ids.append(np.full(len(keys), tag, np.uint16))


def _collect(cats: Sequence[CategorySources], cache_dir: Path | None = None) -> _Collected:
    col = _Collected([c.category for c in cats])
    for ci, cat in enumerate(cats):
        for src in cat.sources:
            for what, path in source_files(src):
                tag = len(col.tags)
                if tag >= MAX_TAGS:
                    raise ListSourceError(f"{path}: too many list files (at most {MAX_TAGS})")
                col.tags.append((ci, str(path)))
                if what == "expressions":
                    col.expressions.append((tag, read_expressions(src)))
                    continue
                if what == "urls":
                    col.url_tags.add(tag)
                keys, single, hosts = _file_keys(src, what, path, cache_dir)
                col.single_label = col.single_label or single
                col.url_hosts.update(hosts)
                _add(col, keys, tag)
    return col


def _file_keys(
    src: ListSource, what: str, path: Path, cache_dir: Path | None
) -> tuple[npt.NDArray[np.uint64], bool, list[str]]:
    """One list file's keys, reused from the key cache while the file is unchanged.

    A reload after editing one small list then re-reads only that file, which keeps
    "saved -> in force" well inside 2 s with millions of entries in the other lists.
    """
    import numpy as np

    cached: Path | None = None
    if cache_dir is not None:
        cached = cache_dir / _cache_name(what, path)
        try:
            with np.load(cached) as data:
                hosts = bytes(data["hosts"]).decode().split("\n") if data["hosts"].size else []
                return data["keys"], bool(data["single"][0]), hosts
        except (OSError, ValueError, KeyError):
            pass  # not cached yet, or damaged: compute it again
    parts: list[npt.NDArray[np.uint64]] = []
    single = False
    hosts_set: set[str] = set()
    if what == "domains":
        for batch in domain_batches(src):
            single = single or batch.single_label
            parts.append(_keys(batch.names, 0, 1))
    else:
        for urls in itertools.batched(iter_urls(src), _BATCH):
            hosts_set.update(map(key_host, urls))
            parts.append(_keys(list(map(str.encode, urls)), _URL_CRC, _URL_ADLER))
    keys = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    hosts = sorted(hosts_set)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        blob = np.frombuffer("\n".join(hosts).encode(), np.uint8)
        np.savez(tmp, keys=keys, single=np.array([single]), hosts=blob)
        os.replace(tmp, cached)
    return keys, single, hosts


def _cache_name(what: str, path: Path) -> str:
    st = path.stat()
    ident = f"{FORMAT_VERSION}|{LAYOUT_VERSION}|{what}|{path}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(ident.encode()).hexdigest() + ".npz"


def _prune_key_cache(cache_dir: Path, cats: Sequence[CategorySources]) -> None:
    """Drop cached keys of files that are no longer in any list, or have changed."""
    if not cache_dir.is_dir():
        return
    keep = {
        _cache_name(what, path)
        for cat in cats
        for src in cat.sources
        for what, path in source_files(src)
    }
    for old in cache_dir.iterdir():
        if old.name not in keep and old.stat().st_mtime < time.time() - 60:
            old.unlink(missing_ok=True)


def _layout(
    keys: npt.NDArray[np.uint64], tags: npt.NDArray[np.uint16]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint16], int]:
    """Ordered linear-probing table: sort by key, place each at max(home, previous + 1)."""
    import numpy as np

    # In-place steps and early `del`s keep the builder's peak memory down.
    order = np.lexsort((tags, keys))
    keys, tags = keys[order], tags[order]
    del order
    if len(keys):
        keep = np.ones(len(keys), bool)
        keep[1:] = (keys[1:] != keys[:-1]) | (tags[1:] != tags[:-1])
        if not keep.all():
            keys, tags = keys[keep], tags[keep]
        del keep
    n = len(keys)
    bits = min(32, max(4, math.ceil(math.log2(max(n, 1) / LOAD_FACTOR))))
    pos = (keys >> np.uint64(64 - bits)).view(np.int64)  # home slots, < 2**32
    ar = np.arange(n, dtype=np.int64)
    pos -= ar
    np.maximum.accumulate(pos, out=pos)
    pos += ar
    del ar
    table_len = max(1 << bits, int(pos[-1]) + 1 if n else 0) + 1  # a final empty slot
    table_keys = np.zeros(table_len, "<u8")
    table_tags = np.zeros(table_len, "<u2")
    table_keys[pos] = keys
    table_tags[pos] = tags
    return table_keys, table_tags, bits


def _write(cats: Sequence[CategorySources], target: Path, fp: str) -> dict[str, Any]:
    import numpy as np

    started = time.perf_counter()
    cache_dir = target.parent / "keys"
    col = _collect(cats, cache_dir)
    _prune_key_cache(cache_dir, cats)
    hosts = [h.encode() for h in col.url_hosts]
    keys = np.concatenate([*col.keys, _keys(hosts, _MARK_CRC, _MARK_ADLER)])
    tags = np.concatenate([*col.tag_ids, np.full(len(hosts), MARKER_TAG, np.uint16)])
    col.keys, col.tag_ids = [], []  # free the per-batch arrays
    table_keys, table_tags, bits = _layout(keys, tags)
    del keys, tags

    used = table_tags[table_keys != 0]
    per_tag = np.bincount(used[used != MARKER_TAG], minlength=len(col.tags))
    by_category = dict.fromkeys(col.categories, 0)
    for (ci, _path), count in zip(col.tags, per_tag.tolist(), strict=False):
        by_category[col.categories[ci]] += count
    url_count = int(sum(per_tag[t] for t in col.url_tags))
    expr_count = sum(len(e) for _t, e in col.expressions)
    for tag, exprs in col.expressions:
        by_category[col.categories[col.tags[tag][0]]] += len(exprs)
    header = {
        "format": [FORMAT_VERSION, LAYOUT_VERSION],
        "fingerprint": fp,
        "byteorder": "little",
        "categories": col.categories,
        "tags": [list(t) for t in col.tags],
        "expressions": [[t, e] for t, e in col.expressions if e],
        "domain_count": int(per_tag.sum()) - url_count,
        "url_count": url_count,
        "expression_count": expr_count,
        "by_category": by_category,
        "single_label": col.single_label,
        "has_urls": bool(hosts),
        "bits": bits,
        "table_len": len(table_keys),
        "built_at": time.time(),
    }
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    checksum = zlib.crc32(table_tags, zlib.crc32(table_keys, zlib.crc32(blob)))
    tmp = target.with_name(f".{target.stem}-{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + len(blob).to_bytes(8, "little") + checksum.to_bytes(8, "little"))
            fh.write(blob)
            table_keys.tofile(fh)
            table_tags.tofile(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    logger.info(
        "built list index %s: %d domains, %d urls, %d expressions in %.1f s",
        target,
        header["domain_count"],
        url_count,
        expr_count,
        time.perf_counter() - started,
    )
    return header


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut (the new name reaches the disk)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_header(path: Path) -> tuple[dict[str, Any], int, int] | None:
    """(header, offset of the table, checksum) of an index file; None if not a complete
    index of ours. Reads the header only: `verify_file` checks the contents."""
    try:
        with open(path, "rb") as fh:
            return _header_of(fh)
    except OSError:
        return None


def _header_of(fh: BinaryIO) -> tuple[dict[str, Any], int, int] | None:
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


def _crc(data: memoryview | mmap.mmap, start: int = PREFIX) -> int:
    """crc32 of data[start:], a chunk at a time (zlib lets other threads run meanwhile)."""
    view = memoryview(data)
    try:
        crc = 0
        for pos in range(start, len(view), _CRC_CHUNK):
            crc = zlib.crc32(view[pos : pos + _CRC_CHUNK], crc)
        return crc
    finally:
        view.release()


def verify_file(path: Path, expected: Expected | None = None) -> str | None:
    """None if the index file at `path` is complete, matches its checksum and is of the
    `expected` lists, else why not."""
    try:
        with ListIndex.open(path, expected):
            return None
    except ListSourceError as exc:
        return str(exc)


def index_fingerprint(cats: Sequence[CategorySources]) -> str:
    """Names an index: the layout version, each category's name and its sources' fingerprint."""
    parts = [LAYOUT_VERSION, [[c.category, fingerprint(c.sources)] for c in cats]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@contextlib.contextmanager
def _locked(index_dir: Path) -> Iterator[None]:
    """One builder per index folder; others wait, then reuse what it built."""
    with open(index_dir / ".lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _prune(index_dir: Path, keep: Path) -> None:
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


def build_index(
    cats: Sequence[CategorySources],
    index_dir: Path,
    *,
    in_subprocess: bool = False,
    verify: bool = False,
) -> Path:
    """Build (or reuse, when the lists are unchanged) the index file; returns its path.

    in_subprocess=True builds in a separate Python process so a reload inside the
    gateway does not hold the request path's GIL; its errors arrive as ListSourceError.
    verify=True reads the whole file before reusing it and rebuilds it if its checksum
    fails (without, only its header is read: ListIndex.open checks the rest). A file
    under the index's name whose header is not of these lists is rebuilt, never reused.
    """
    built = _build(cats, index_dir, Expected.of(cats), in_subprocess=in_subprocess, verify=verify)
    return built[0]


def _build(
    cats: Sequence[CategorySources],
    index_dir: Path,
    expected: Expected,
    *,
    in_subprocess: bool,
    verify: bool,
) -> tuple[Path, Expected]:
    """(the index file, what it must hold: `expected`, with the entry counts once a builder
    has said them), for ListIndex.open to check."""
    index_dir = Path(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransientListError(
            f"cannot create the index folder {index_dir}: {exc.strerror}"
        ) from None
    target = _target(index_dir, expected.fingerprint)
    if in_subprocess:
        if verify or _problem_at(target, expected) is not None:
            return _build_in_subprocess(cats, index_dir, expected, verify)
        _touch(target)
        return target, expected
    try:
        with _locked(index_dir):
            problem = _problem_at(target, expected)
            if problem is None and verify:
                problem = verify_file(target, expected)
            if problem is None:
                _touch(target)
                logger.debug("list index %s is up to date", target)
                found = _read_header(target)
                if found is not None:
                    return target, Expected.of_header(target, found[0])
            elif target.exists():
                logger.warning("%s; building it again", problem)
                target.unlink()
            header = _write(cats, target, expected.fingerprint)
            _prune(index_dir, target)
    except OSError as exc:
        raise TransientListError(
            f"cannot write the list index in {index_dir}: {exc.strerror or exc}"
        ) from None
    return target, Expected.of_header(target, header)


def _problem_at(target: Path, expected: Expected) -> str | None:
    """None if `target` has the header of an index of the `expected` lists, else why not
    (its contents are checked by ListIndex.open)."""
    found = _read_header(target)
    if found is None:
        if not target.exists():
            return f"there is no list index {target}"
        return f"the list index {target} is damaged: its header is not an index's of this version"
    try:
        return expected.mismatch(target, Expected.of_header(target, found[0]))
    except IndexDamaged as exc:
        return str(exc)


def _target(index_dir: Path, fp: str) -> Path:
    return Path(index_dir) / f"lists-{fp}.idx"


def open_index(
    cats: Sequence[CategorySources],
    index_dir: Path,
    *,
    in_subprocess: bool = False,
    on_damaged: Callable[[str], None] | None = None,
) -> ListIndex:
    """Build or reuse the index and open it, checksum and header checked (an index of
    other lists under this name is damage too); a damaged file is rebuilt.

    `on_damaged(message)` hears of a damaged file before it is rebuilt (status, alerts).
    A file still damaged after the rebuild raises IndexDamaged: nothing is served from it.
    """

    def damaged(problem: str) -> None:
        # A warning: at start-up mitmdump exits on any error logged, and this one is mended.
        logger.warning("%s; rebuilding it", problem)
        if on_damaged is not None:
            on_damaged(problem)

    expected = Expected.of(cats)
    target = _target(index_dir, expected.fingerprint)
    if target.exists():
        problem = _problem_at(target, expected)
        if problem is not None:
            # Written whole by a rename, so one there was whole, of these lists: not now.
            damaged(problem)
    path, built = _build(cats, index_dir, expected, in_subprocess=in_subprocess, verify=False)
    try:
        return ListIndex.open(path, built)
    except IndexDamaged as exc:
        damaged(str(exc))
    path, built = _build(cats, index_dir, expected, in_subprocess=in_subprocess, verify=True)
    return ListIndex.open(path, built)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)  # newest again, so pruning keeps the index in use


# ---------------------------------------------------------------- subprocess build


def _build_in_subprocess(
    cats: Sequence[CategorySources], index_dir: Path, expected: Expected, verify: bool
) -> tuple[Path, Expected]:
    request = {
        "index_dir": str(index_dir),
        "verify": verify,
        "fingerprint": expected.fingerprint,
        "cats": [
            {"category": c.category, "sources": [[s.kind, str(s.path)] for s in c.sources]}
            for c in cats
        ],
    }
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "proxy_addons.core.lists.index"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientListError(
            f"building the list index took longer than {BUILD_TIMEOUT:.0f} s and was stopped"
        ) from None
    _relay_logs(proc.stderr)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {}
    if proc.returncode == 0 and "path" in result:
        return _answered(result, _target(index_dir, expected.fingerprint), expected)
    if "error" in result:
        raise (TransientListError if result.get("may_pass") else ListSourceError)(result["error"])
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    # No answer at all: killed (out of memory?) or crashed; worth another try later.
    raise TransientListError(f"building the list index failed: {tail[0]}")


def _answered(result: dict[str, Any], target: Path, expected: Expected) -> tuple[Path, Expected]:
    """The builder's answer, if it is about the index it was asked for: the entry counts
    it built are then expected of the file opened (a file swapped in meanwhile is not it)."""
    try:
        path = Path(result["path"])
        counts = result["counts"]
        built = replace(expected, counts=(int(counts[0]), int(counts[1]), int(counts[2])))
    except (KeyError, TypeError, ValueError, IndexError):
        path, built = Path(), expected
    if path != target or result.get("fingerprint") != expected.fingerprint:
        raise TransientListError(
            f"the index builder answered {str(result)[:300]}, not about {target}"
        )
    return path, built


def _relay_logs(stderr: str) -> None:
    """Re-emit the builder's log records through this process's logging."""
    for line in stderr.splitlines():
        try:
            rec = json.loads(line)
            logging.getLogger(rec["name"]).log(rec["level"], "%s", rec["msg"])
        except (ValueError, KeyError, TypeError):
            if line.strip():
                logger.warning("index builder: %s", line)


class _JsonLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        line = json.dumps(
            {"name": record.name, "level": record.levelno, "msg": record.getMessage()}
        )
        sys.stderr.write(line + "\n")


def _child_main() -> int:
    logging.basicConfig(level=logging.INFO, handlers=[_JsonLines()])
    request = json.load(sys.stdin)
    cats = [
        CategorySources(c["category"], tuple(ListSource(k, Path(p)) for k, p in c["sources"]))
        for c in request["cats"]
    ]
    try:
        expected = Expected.of(cats)
        if expected.fingerprint != request["fingerprint"]:
            raise TransientListError("the lists changed while their index was being built")
        path, built = _build(
            cats,
            Path(request["index_dir"]),
            expected,
            in_subprocess=False,
            verify=bool(request.get("verify")),
        )
    except ListSourceError as exc:
        print(json.dumps({"error": str(exc), "may_pass": error_may_pass(exc)}))
        return 2
    print(json.dumps({"path": str(path), "fingerprint": built.fingerprint, "counts": built.counts}))
    return 0


# -------------------------------------------------------------------------- lookup


def _mismatch(path: Path, stored: int, actual: int) -> str:
    return (
        f"the list index {path} is damaged: its checksum does not match its contents "
        f"(written {stored:08x}, now {actual:08x})"
    )


class _Refuse:
    """Stands in for a damaged index's table: every read raises IndexDamaged."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def __getitem__(self, slot: int) -> int:
        raise IndexDamaged(self.problem)

    def release(self) -> None:
        pass


class ListIndex:
    """A read-only view of an index file; lookups take canonical hosts (Host.name)."""

    categories: tuple[str, ...]
    entry_count: int
    damaged: str | None = None  # why every lookup now refuses (mark_damaged)
    identity: Expected  # what its header says: a file replacing it must say the same
    _file_id: tuple[int, int] = (0, 0)  # st_dev, st_ino of the file mapped

    def __init__(
        self, path: Path, mm: mmap.mmap, header: dict[str, Any], offset: int, checksum: int
    ) -> None:
        self.path = path
        self.header = header
        self.checksum = checksum
        self._size = len(mm)
        self.fingerprint: str = header["fingerprint"]
        self.categories = tuple(header["categories"])
        self.domain_count: int = header["domain_count"]
        self.url_count: int = header["url_count"]
        self.expression_count: int = header["expression_count"]
        self.entry_count = self.domain_count + self.url_count + self.expression_count
        self.by_category: dict[str, int] = header["by_category"]
        self._tags = [(self.categories[c], p) for c, p in header["tags"]]
        n = int(header["table_len"])
        self._mm = mm
        view = memoryview(mm)
        self._view = view
        self._keys: memoryview | _Refuse = view[offset : offset + 8 * n].cast("Q")
        self._values: memoryview | _Refuse = view[offset + 8 * n : offset + 10 * n].cast("H")
        self._views = (self._keys, self._values, view)
        self._crc_shift = 32 - int(header["bits"])  # home slot = top bits of the crc32 half
        self._hit_cache: dict[int, tuple[Match, ...]] = {}
        self._single_label = bool(header["single_label"])
        self._has_urls = bool(header["has_urls"])
        self._expressions = [self._compile(tag, exprs) for tag, exprs in header["expressions"]]

    @classmethod
    def open(cls, path: Path, expected: Expected | None = None) -> ListIndex:
        """Map an index file read-only (no private copy: workers share the page cache).

        The whole file is checked against its checksum first, then its header against
        `expected` (what the policy's lists give): a damaged file, or an index of other
        lists, raises IndexDamaged and is never served.
        """
        path = Path(path)
        try:
            with open(path, "rb") as fh:  # header and mapping from one file, even mid-replace
                found = _header_of(fh)
                if found is not None and sys.byteorder == found[0]["byteorder"]:
                    header, offset, checksum = found
                    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                    actual = _crc(mm)
                    if actual != checksum:
                        mm.close()
                        raise IndexDamaged(_mismatch(path, checksum, actual))
                    try:
                        identity = Expected.of_header(path, header)
                        problem = expected.mismatch(path, identity) if expected else None
                        if problem is not None:
                            raise IndexDamaged(problem)
                    except IndexDamaged:
                        mm.close()
                        raise
                    st = os.fstat(fh.fileno())
                    index = cls(path, mm, header, offset, checksum)
                    index.identity, index._file_id = identity, (st.st_dev, st.st_ino)
                    return index
        except OSError as exc:
            raise ListSourceError(f"cannot open the list index {path}: {exc.strerror}") from None
        raise IndexDamaged(
            f"the list index {path} is damaged, from another version or another kind of "
            "machine; delete it and let the gateway rebuild it"
        )

    def verify(self) -> str | None:
        """Check the mapped file against its checksum again, and the file now under its
        name: None if both are still right, else what is wrong. The mapping shows the file
        as it is now, so this sees a file changed in place after it was opened."""
        if self.damaged is not None:
            return self.damaged
        try:
            if self._mm.size() != self._size:
                return f"the list index {self.path} is damaged: its size changed while in use"
            actual = _crc(self._view)
        except (ValueError, OSError):
            return None  # closed: nothing serves from it any more
        if actual != self.checksum:
            return _mismatch(self.path, self.checksum, actual)
        return self._replaced()

    def _replaced(self) -> str | None:
        """A file put under this index's name (a rename: the mapping still shows the old
        one) is what the next reload or start opens: it must be an index of the same lists
        (a rebuild), else it is damage."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # removed (pruned): the next open builds it again
        if (st.st_dev, st.st_ino) == self._file_id:
            return None
        return _problem_at(self.path, self.identity)

    def mark_damaged(self, problem: str) -> None:
        """Refuse every lookup from now on: the Filter blocks what it cannot look up."""
        self.damaged = problem
        self._keys = self._values = _Refuse(problem)
        self._hit_cache = {}

    def close(self) -> None:
        """Unmap the file; call once no lookup is running."""
        for view in self._views:
            view.release()
        self._mm.close()

    def __enter__(self) -> ListIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ListIndex({str(self.path)!r}, entries={self.entry_count})"

    def _compile(
        self, tag: int, exprs: list[str]
    ) -> tuple[str, str, re.Pattern[str] | None, list[tuple[str, re.Pattern[str]]]]:
        category, source = self._tags[tag]
        singles = []
        for e in exprs:
            try:
                singles.append((e, compile_expression(e)))
            except re.error:
                logger.warning("%s: skipped expression %r that Python cannot compile", source, e)
        try:
            combined: re.Pattern[str] | None = compile_expression(
                "|".join(f"(?:{e})" for e, _rx in singles)
            )
        except re.error:
            combined = None  # e.g. back-references; fall back to one search each
        return category, source, combined, singles

    def _hits(self, slot: int, key: int, entry: bytes) -> tuple[Match, ...]:
        """The matches of `key`, whose run of equal-crc32 keys starts at `slot` (cached).

        Callers look in _hit_cache first: popular blocked sites then cost no allocation.
        """
        keys, values, tags = self._keys, self._values, self._tags
        k = keys[slot]
        while k and k < key:  # same crc32 half, smaller adler32 half
            slot += 1
            k = keys[slot]
        text = entry.decode(errors="replace")
        out = []
        while keys[slot] == key:
            tag = values[slot]
            if tag < len(tags):
                out.append(Match(tags[tag][0], text, tags[tag][1]))
            slot += 1
        hits = tuple(out)
        cache = self._hit_cache
        if len(cache) >= _HIT_CACHE_SIZE:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del cache[next(iter(cache))]  # the oldest entry (another thread may race us)
        cache[key] = hits
        return hits

    def match_host(self, host: str) -> list[Match]:
        """Domain entries covering `host` (it and its parent domains); IPs match exactly.

        The hot path: per suffix one crc32 and one or two table reads; adler32 (the
        other half of the key) is computed only when the crc32 half is present.
        """
        found: list[Match] = []
        if not host:
            return found
        data = host.encode()
        keys = self._keys
        shift = self._crc_shift
        crc32, adler32 = zlib.crc32, zlib.adler32
        cache = self._hit_cache
        if host[-1] in "0123456789" and host.rpartition(".")[2].isdigit():
            stop = -1  # an IPv4 literal: no parent domains
        else:
            stop = len(data) if self._single_label else data.rfind(b".")
        start = 0
        while True:
            part = data[start:] if start else data
            crc = crc32(part)
            low = crc << 32
            slot = crc >> shift
            k = keys[slot]
            while 0 < k < low:
                slot += 1
                k = keys[slot]
            if k >> 32 == crc:
                key = low | adler32(part)
                hits = cache.get(key)
                found += hits if hits is not None else self._hits(slot, key, part)
            dot = data.find(b".", start)
            if dot < 0 or dot >= stop:
                return found
            start = dot + 1

    def _probe(self, key: int) -> int:
        """The first slot of `key`'s crc32 run if the key is present, else -1."""
        keys = self._keys
        slot = key >> (self._crc_shift + 32)
        k = keys[slot]
        while 0 < k < key:
            slot += 1
            k = keys[slot]
        return slot if k == key else -1

    def match_url(self, host: str, path_and_query: str) -> list[Match]:
        """URL entries whose match keys are prefixes of the request's at a '/' or '?'.

        Entries are stored as canonical.match_key writes them, and the request is keyed
        the same way, so "a.com/x" covers a.com/x, a.com//x/, a.com/x;p/y and a.com/x?q
        but not a.com/xy. Hosts must be equal. Hosts without URL entries cost one probe.
        """
        found: list[Match] = []
        if not self._has_urls:
            return found
        hb = host.encode()
        crc32, adler32 = zlib.crc32, zlib.adler32
        if self._probe((crc32(hb, _MARK_CRC) << 32) | adler32(hb, _MARK_ADLER)) < 0:
            return found
        data = match_key(host + path_and_query).encode()
        ends = [m.start() for m in _URL_SEP.finditer(data, len(hb))]
        ends.append(len(data))  # keys never end in '/' or '?'
        for end in ends:
            part = data[:end]
            key = (crc32(part, _URL_CRC) << 32) | adler32(part, _URL_ADLER)
            slot = self._probe(key)
            if slot >= 0:
                found += self._hit_cache.get(key) or self._hits(slot, key, part)
        return found

    def match_expressions(self, url: str) -> list[Match]:
        """Expression entries found (re.search, case-insensitive) in the full URL.

        One match per list file: the first of its expressions that matches.
        """
        found: list[Match] = []
        for category, source, combined, singles in self._expressions:
            if combined is not None and not combined.search(url):
                continue
            for text, rx in singles:
                if rx.search(url):
                    found.append(Match(category, text, source))
                    break
        return found


if __name__ == "__main__":
    sys.exit(_child_main())
