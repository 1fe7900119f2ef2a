"""Serving from the list index: a read-only, memory-mapped view of an index file, and lookups.

The file's layout and why it is shaped so are in layout.py; building it is build.py (and
build_process.py, off the request path). `open_built` opens the index of given lists, built
by the builder its caller names, and rebuilds a damaged file: the gateway names the
subprocess builder, so a serving process never loads numpy.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proxy_addons.core.lists.layout import (
    MARK_ADLER,
    MARK_CRC,
    URL_ADLER,
    URL_CRC,
    CategorySources,
    Expected,
    IndexDamaged,
    Match,
    checksum_mismatch,
    crc_of,
    header_of,
    index_path,
    problem_at,
)
from proxy_addons.core.lists.sources import ListSourceError, compile_expression
from proxy_addons.core.url_keys import match_key

logger = logging.getLogger(__name__)

_HIT_CACHE_SIZE = 1 << 16
_URL_SEP = re.compile(rb"[/?]")

# Builds (or reuses) the index of `cats` in `index_dir`: (cats, index_dir, expected, verify)
# -> (its file, what it must hold). build.build_here, build_process.build_in_subprocess.
Builder = Callable[[Sequence[CategorySources], Path, Expected, bool], tuple[Path, Expected]]


def verify_file(path: Path, expected: Expected | None = None) -> str | None:
    """None if the index file at `path` is complete, matches its checksum and is of the
    `expected` lists, else why not."""
    try:
        with ListIndex.open(path, expected):
            return None
    except ListSourceError as exc:
        return str(exc)


def open_built(
    cats: Sequence[CategorySources],
    index_dir: Path,
    build: Builder,
    *,
    on_damaged: Callable[[str], None] | None = None,
) -> ListIndex:
    """Build (with `build`) or reuse the index and open it, checksum and header checked (an
    index of other lists under this name is damage too); a damaged file is rebuilt.

    `on_damaged(message)` hears of a damaged file before it is rebuilt (status, alerts).
    A file still damaged after the rebuild raises IndexDamaged: nothing is served from it.
    """

    def damaged(problem: str) -> None:
        # A warning: at start-up mitmdump exits on any error logged, and this one is mended.
        logger.warning("%s; rebuilding it", problem)
        if on_damaged is not None:
            on_damaged(problem)

    expected = Expected.of(cats)
    target = index_path(index_dir, expected.fingerprint)
    if target.exists():
        problem = problem_at(target, expected)
        if problem is not None:
            # Written whole by a rename, so one there was whole, of these lists: not now.
            damaged(problem)
    path, built = build(cats, Path(index_dir), expected, False)
    try:
        return ListIndex.open(path, built)
    except IndexDamaged as exc:
        damaged(str(exc))
    path, built = build(cats, Path(index_dir), expected, True)
    return ListIndex.open(path, built)


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
                found = header_of(fh)
                if found is not None and sys.byteorder == found[0]["byteorder"]:
                    header, offset, checksum = found
                    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                    actual = crc_of(mm)
                    if actual != checksum:
                        mm.close()
                        raise IndexDamaged(checksum_mismatch(path, checksum, actual))
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
            actual = crc_of(self._view)
        except (ValueError, OSError):
            return None  # closed: nothing serves from it any more
        if actual != self.checksum:
            return checksum_mismatch(self.path, self.checksum, actual)
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
        return problem_at(self.path, self.identity)

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

        Entries are stored as url_keys.match_key writes them, and the request is keyed
        the same way, so "a.com/x" covers a.com/x, a.com//x/, a.com/x;p/y and a.com/x?q
        but not a.com/xy. Hosts must be equal. Hosts without URL entries cost one probe.
        """
        found: list[Match] = []
        if not self._has_urls:
            return found
        hb = host.encode()
        crc32, adler32 = zlib.crc32, zlib.adler32
        if self._probe((crc32(hb, MARK_CRC) << 32) | adler32(hb, MARK_ADLER)) < 0:
            return found
        data = match_key(host + path_and_query).encode()
        ends = [m.start() for m in _URL_SEP.finditer(data, len(hb))]
        ends.append(len(data))  # keys never end in '/' or '?'
        for end in ends:
            part = data[:end]
            key = (crc32(part, URL_CRC) << 32) | adler32(part, URL_ADLER)
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
