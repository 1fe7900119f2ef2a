"""Building the list index: every list's entries hashed to keys, laid out as an ordered
linear-probing table, written whole and renamed into place (layout.py says why this shape).

numpy does the bulk work (hashing millions of entries, sorting, placing); only this module
imports it. A list file's keys are cached while the file is unchanged, so a reload after
editing one small list re-reads only that file. `build_index` and `open_index` build here or,
with in_subprocess=True, in a builder process (build_process.py), which runs this module:
`python -m proxy_addons.core.lists.build`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from proxy_addons.core.lists.build_process import build_in_subprocess
from proxy_addons.core.lists.index import ListIndex, open_built, verify_file
from proxy_addons.core.lists.layout import (
    LAYOUT_VERSION,
    MAGIC,
    MARK_ADLER,
    MARK_CRC,
    URL_ADLER,
    URL_CRC,
    CategorySources,
    Expected,
    TransientListError,
    error_may_pass,
    fsync_dir,
    index_folder,
    index_path,
    locked,
    problem_at,
    prune_indexes,
    read_header,
    touch,
)
from proxy_addons.core.lists.sources import (
    FORMAT_VERSION,
    ListSource,
    ListSourceError,
    domain_batches,
    iter_urls,
    read_expressions,
    source_files,
)
from proxy_addons.core.url_keys import key_host

logger = logging.getLogger(__name__)

LOAD_FACTOR = 0.65
MARKER_TAG = 0xFFFF  # url-host markers: "this host has url entries"
MAX_TAGS = MARKER_TAG
_BATCH = 1 << 16


def _keys(datas: list[bytes], crc0: int, adler0: int) -> npt.NDArray[np.uint64]:
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
            parts.append(_keys(list(map(str.encode, urls)), URL_CRC, URL_ADLER))
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
    started = time.perf_counter()
    cache_dir = target.parent / "keys"
    col = _collect(cats, cache_dir)
    _prune_key_cache(cache_dir, cats)
    hosts = [h.encode() for h in col.url_hosts]
    keys = np.concatenate([*col.keys, _keys(hosts, MARK_CRC, MARK_ADLER)])
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
        fsync_dir(target.parent)
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
    build = build_in_subprocess if in_subprocess else build_here
    return build(cats, Path(index_dir), Expected.of(cats), verify)[0]


def open_index(
    cats: Sequence[CategorySources],
    index_dir: Path,
    *,
    in_subprocess: bool = False,
    on_damaged: Callable[[str], None] | None = None,
) -> ListIndex:
    """Build or reuse the index and open it, checksum and header checked (an index of
    other lists under this name is damage too); a damaged file is rebuilt (index.open_built).

    `on_damaged(message)` hears of a damaged file before it is rebuilt (status, alerts).
    A file still damaged after the rebuild raises IndexDamaged: nothing is served from it.
    """
    build = build_in_subprocess if in_subprocess else build_here
    return open_built(cats, index_dir, build, on_damaged=on_damaged)


def build_here(
    cats: Sequence[CategorySources], index_dir: Path, expected: Expected, verify: bool
) -> tuple[Path, Expected]:
    """Build (or reuse) in this process, one builder per folder: (the index file, what it must
    hold: `expected`, with the entry counts once a builder has said them), for
    ListIndex.open to check. `verify`: check a reused file's checksum too."""
    index_dir = index_folder(index_dir)
    target = index_path(index_dir, expected.fingerprint)
    try:
        with locked(index_dir):
            problem = problem_at(target, expected)
            if problem is None and verify:
                problem = verify_file(target, expected)
            if problem is None:
                touch(target)
                logger.debug("list index %s is up to date", target)
                found = read_header(target)
                if found is not None:
                    return target, Expected.of_header(target, found[0])
            elif target.exists():
                logger.warning("%s; building it again", problem)
                target.unlink()
            header = _write(cats, target, expected.fingerprint)
            prune_indexes(index_dir, target)
    except OSError as exc:
        raise TransientListError(
            f"cannot write the list index in {index_dir}: {exc.strerror or exc}"
        ) from None
    return target, Expected.of_header(target, header)


class _JsonLines(logging.Handler):
    """The builder process's log records, one JSON line each, for its parent to log again."""

    def emit(self, record: logging.LogRecord) -> None:
        line = json.dumps(
            {"name": record.name, "level": record.levelno, "msg": record.getMessage()}
        )
        sys.stderr.write(line + "\n")


def _child_main() -> int:
    """The builder process (build_process.py): the request on stdin, one answer on stdout."""
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
        path, built = build_here(
            cats, Path(request["index_dir"]), expected, bool(request.get("verify"))
        )
    except ListSourceError as exc:
        print(json.dumps({"error": str(exc), "may_pass": error_may_pass(exc)}))
        return 2
    print(json.dumps({"path": str(path), "fingerprint": built.fingerprint, "counts": built.counts}))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
