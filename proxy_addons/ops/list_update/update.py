"""Updating the lists: download and check each archive, swap its files in, rebuild the index;
on any failure put the old files back (see the package's docstring)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from proxy_addons.core.lists.sources import (
    UT1_FILES,
    ListSource,
    ListSourceError,
    iter_domains,
    iter_urls,
)
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.runtime import PolicyLoadError
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.ops.list_update.config import (
    STATUS_FILE,
    Archive,
    UpdateConfig,
    UpdateError,
)

logger = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 2 << 30
MAX_UNPACKED_BYTES = 8 << 30
TIMEOUT_SECONDS = 120
_CHUNK = 1 << 20

# ----------------------------------------------------------------- fetch and check


@dataclass
class Digests:
    sha256: str
    md5: str
    size: int


def download(url: str, dest: Path, max_bytes: int = MAX_DOWNLOAD_BYTES) -> Digests:
    """Save url to dest, hashing as it comes; refuse anything larger than max_bytes."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    request = urllib.request.Request(url, headers={"User-Agent": "schoolgate-lists-update"})
    try:
        with (
            urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp,
            dest.open("wb") as out,
        ):
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UpdateError(f"{url}: larger than {max_bytes >> 20} MiB, refused")
                sha.update(chunk)
                md5.update(chunk)
                out.write(chunk)
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{url}: download failed: {exc}") from None
    return Digests(sha.hexdigest(), md5.hexdigest(), size)


def check_digest(archive: Archive, got: Digests) -> None:
    if archive.sha256 and got.sha256 != archive.sha256:
        raise UpdateError(
            f"{archive.url}: SHA-256 {got.sha256} is not the configured {archive.sha256}"
        )
    if not archive.checksums:
        return
    try:
        with urllib.request.urlopen(archive.checksums, timeout=TIMEOUT_SECONDS) as resp:
            text = resp.read(1 << 20).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{archive.checksums}: download failed: {exc}") from None
    name = PurePosixPath(urlparse(archive.url).path).name
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].lstrip("*").endswith(name):
            expected = parts[0].lower()
            if expected in (got.sha256, got.md5):
                return
            raise UpdateError(
                f"{archive.url}: checksum {expected} from {archive.checksums} "
                "does not match the download"
            )
    raise UpdateError(f"{archive.checksums} has no checksum for {name}")


def unpack(path: Path, dest: Path, top: str) -> Path:
    """Unpack a tar archive safely; returns the folder holding the lists."""
    try:
        with tarfile.open(path, "r:*") as tar:
            total = sum(m.size for m in tar.getmembers())
            if total > MAX_UNPACKED_BYTES:
                raise UpdateError(f"{path.name} unpacks to {total >> 20} MiB, refused")
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UpdateError(f"the archive does not unpack: {exc}") from None
    root = dest / top if top else dest
    if not root.is_dir():
        raise UpdateError(f"the archive has no folder {top!r}")
    return root


def _entries(source: ListSource) -> int:
    count = 0
    if source.kind in ("ut1", "domains", "hosts"):
        count += sum(1 for _ in iter_domains(source))
    if source.kind in ("ut1", "urls"):
        count += sum(1 for _ in iter_urls(source))
    return count


def used_sources(policy_path: Path, into: Path) -> list[ListSource]:
    """The policy's category lists that live in the folder `into`."""
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        raise UpdateError(f"the policy does not load, so lists can't be checked: {exc}") from None
    found: dict[Path, ListSource] = {}
    for category in policy.categories.values():
        for source in category.sources.sources:
            if source.path == into or into in source.path.parents:
                found[source.path] = source
    return list(found.values())


@dataclass
class Checked:
    source: str
    before: int | None
    after: int


def check_staged(
    sources: list[ListSource], into: Path, staged: Path, min_fraction: float, force: bool
) -> list[Checked]:
    """Every list the policy uses from `into` reads in the new tree and did not shrink too far."""
    results = []
    for source in sources:
        rel = source.path.relative_to(into)
        new = ListSource(source.kind, staged / rel)
        try:
            after = _entries(new)
        except ListSourceError as exc:
            raise UpdateError(f"the new {rel} can't be used: {exc}") from None
        try:
            before: int | None = _entries(source)
        except ListSourceError:
            before = None
        if before and after < before * min_fraction and not force:
            raise UpdateError(
                f"the new {rel} has {after} entries where the one in use has {before} "
                f"(below {min_fraction:.0%}): refused; `schoolgate lists update --force` takes it"
            )
        results.append(Checked(str(rel), before, after))
    return results


# ----------------------------------------------------------------- swap


@dataclass
class Swap:
    """Files replaced (with their saved previous version) or added, to undo in reverse."""

    into: Path
    backup: Path
    replaced: list[Path] = field(default_factory=list)
    added: list[Path] = field(default_factory=list)
    relinked: list[tuple[Path, str]] = field(default_factory=list)  # (link, its old target)

    def undo(self) -> None:
        for target in reversed(self.added):
            with contextlib.suppress(OSError):
                target.unlink()
        for link, old in reversed(self.relinked):
            with contextlib.suppress(OSError):
                link.unlink()
                link.symlink_to(old)
        for target in reversed(self.replaced):
            saved = self.backup / target.relative_to(self.into)
            if saved.exists():
                os.replace(saved, target)
        self.added, self.relinked, self.replaced = [], [], []


def _save(swap: Swap, target: Path) -> None:
    saved = swap.backup / target.relative_to(swap.into)
    saved.parent.mkdir(parents=True, exist_ok=True)
    os.link(target, saved)  # same filesystem: the old file stays whole until undo or cleanup
    swap.replaced.append(target)


def _move_link(swap: Swap, link: Path, target: Path) -> None:
    """A symbolic link in the archive (UT1 has a few, between category names)."""
    if target.is_symlink():
        swap.relinked.append((target, os.readlink(target)))
        os.replace(link, target)
    elif not target.exists():
        os.replace(link, target)
        swap.added.append(target)
    # A real file or folder of that name stays: the lists in use are never lost to a link.


def swap_in(staged: Path, into: Path, backup: Path) -> Swap:
    """Move the new list files over the old ones by rename, saving each old one first.

    In each category folder of the new tree, the list files it doesn't have any
    more are removed (saved too); category folders it lacks are left alone.
    """
    swap = Swap(into, backup)
    try:
        for folder, dirs, files in os.walk(staged):
            rel = Path(folder).relative_to(staged)
            target_dir = into / rel
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in [*dirs, *files]:
                source, target = Path(folder) / name, target_dir / name
                if source.is_symlink():
                    _move_link(swap, source, target)
                elif name in files:
                    if target.exists() or target.is_symlink():
                        _save(swap, target)
                    else:
                        swap.added.append(target)
                    os.replace(source, target)
            for name in UT1_FILES:
                gone = target_dir / name
                if files and name not in files and gone.is_file() and not gone.is_symlink():
                    _save(swap, gone)
                    gone.unlink()
    except OSError as exc:
        swap.undo()
        raise UpdateError(
            f"swapping the new lists in failed, the old ones are back: {exc}"
        ) from None
    return swap


# ----------------------------------------------------------------- the update


@dataclass
class Result:
    ok: bool
    message: str
    archives: list[dict[str, object]] = field(default_factory=list)


@contextlib.contextmanager
def _lock(var: Path) -> Iterator[None]:
    path = var / "run" / "lists-update.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpdateError("another list update is running") from None
        yield


def _update_one(
    archive: Archive, policy_path: Path, min_fraction: float, force: bool
) -> tuple[Swap, dict[str, object]]:
    into = archive.into.resolve()
    into.parent.mkdir(parents=True, exist_ok=True)
    sources = used_sources(policy_path, into)
    work = into.parent / f".{into.name}.update-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        name = PurePosixPath(urlparse(archive.url).path).name or "archive"
        got = download(archive.url, work / name)
        check_digest(archive, got)
        staged = unpack(work / name, work / "unpacked", archive.top)
        checked = check_staged(sources, into, staged, min_fraction, force)
        backup = into.parent / f".{into.name}.previous"
        shutil.rmtree(backup, ignore_errors=True)
        swap = swap_in(staged, into, backup)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info: dict[str, object] = {
        "url": archive.url,
        "into": str(into),
        "sha256": got.sha256,
        "bytes": got.size,
        "lists": [{"list": c.source, "before": c.before, "after": c.after} for c in checked],
    }
    return swap, info


def update_lists(
    policy_path: Path, var: Path, config: UpdateConfig, *, force: bool = False
) -> Result:
    """Update every archive, then rebuild the index; on any failure put the old files back."""
    swaps: list[Swap] = []
    infos: list[dict[str, object]] = []
    lists = 0
    try:
        with _lock(var):
            for archive in config.archives:
                swap, info = _update_one(archive, policy_path, config.min_fraction, force)
                swaps.append(swap)
                infos.append(info)
                lists += len(info["lists"])  # type: ignore[arg-type]
            try:
                load_all(policy_path, var / "index").index.close()
            except PolicyLoadError as exc:
                for swap in reversed(swaps):
                    swap.undo()
                with contextlib.suppress(PolicyLoadError):  # the index of the old lists again
                    load_all(policy_path, var / "index").index.close()
                raise UpdateError(
                    f"the new lists don't build into an index, the old ones are back: {exc}"
                ) from None
    except UpdateError as exc:
        for swap in reversed(swaps):  # archives taken earlier in this run go back too
            swap.undo()
        result = Result(False, str(exc), infos)
    else:
        result = Result(True, f"{len(infos)} archive(s), {lists} lists updated", infos)
    write_status(var, result)
    return result


def write_status(var: Path, result: Result) -> None:
    path = var / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": result.ok,
        "message": result.message,
        "archives": result.archives,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path)
