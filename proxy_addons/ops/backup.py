"""Backups of a gateway (store, configuration, CA, audit trail) and restoring one.

An archive is a gzipped tar holding `manifest.json` and its members:

    store/meta.json        database kind, schema revision, row counts, audit head
    store/<table>.jsonl    every row of every table, one JSON object a line
    audit/export.json      the audit trail as `schoolgate audit export --format json`
    ca/<file>              the school's CA (mitmproxy's confdir files)
    config/policy/<path>   the policy file and every file it names, by path under its folder
    config/other/<path>    files the policy names outside its folder, by absolute path

The manifest gives each member's size and SHA-256; restore checks every one
before it writes anything, so a damaged or edited archive is refused whole.

The store is copied table by table through SQLAlchemy rather than with
sqlite3's backup API or pg_dump: the one code path works on SQLite and
PostgreSQL alike (and restores from one into the other), needs no client tools
of the server's exact version, and reads in one snapshot (a SQLite read
transaction under WAL; REPEATABLE READ on PostgreSQL), so a backup taken while
the gateway runs is consistent. Restore brings an empty database to the
archive's schema revision, loads the rows, then upgrades to this code's revision.

Archives hold the CA's private key, password hashes and the access log: they
are written readable by their owner only and must be kept like the gateway.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import IO, Any

import sqlalchemy as sa

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops import school_ca
from proxy_addons.store import MIGRATIONS, Store, alembic_config
from proxy_addons.store.schema import audit_head, metadata
from proxy_addons.workflow import audit

logger = logging.getLogger(__name__)

FORMAT = "schoolgate-backup/1"
MANIFEST = "manifest.json"
NAME_PATTERN = re.compile(r"^schoolgate-backup-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.gz$")
BATCH = 1000


class BackupError(RuntimeError):
    """A backup can't be made, or an archive can't (or mustn't) be restored."""


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a gateway keeps its things (the same arguments as `schoolgate run`)."""

    policy: Path
    var: Path
    dsn: str | None = None
    ca_dir: Path | None = None

    @property
    def ca(self) -> Path:
        return self.ca_dir or self.var / "ca"

    @property
    def url(self) -> str:
        from proxy_addons.store import store_url

        return store_url(self.var, self.dsn)


# -- what goes in -------------------------------------------------------------


def policy_files(policy_path: Path) -> tuple[list[Path], str | None]:
    """The policy file and every file or folder it names; a broken policy: its whole folder."""
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        folder = policy_path.resolve().parent
        everything = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        return everything, f"the policy did not load, so its whole folder was saved: {exc}"
    found: list[Path] = [policy.path.resolve()]
    _paths_in(policy, found, set())
    files: list[Path] = []
    for path in found:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            files.append(path)
    return list(dict.fromkeys(p.resolve() for p in files)), None


def _paths_in(value: Any, out: list[Path], seen: set[int]) -> None:
    """Every Path inside the policy's dataclasses (lists, secrets files, libraries...)."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, Path):
        out.append(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name != "memo":
                _paths_in(getattr(value, f.name), out, seen)
    elif isinstance(value, dict):
        for item in value.values():
            _paths_in(item, out, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _paths_in(item, out, seen)


def _config_name(path: Path, policy_dir: Path) -> str:
    try:
        return f"config/policy/{path.relative_to(policy_dir).as_posix()}"
    except ValueError:
        return f"config/other/{path.as_posix().lstrip('/')}"


# -- rows as JSON ---------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decoder(column: sa.Column[Any]) -> Any:
    kind_of = column.type
    if isinstance(kind_of, sa.TypeDecorator):
        kind_of = kind_of.impl_instance
    try:
        kind = kind_of.python_type
    except NotImplementedError:
        return None
    if kind is datetime:
        return datetime.fromisoformat
    if kind is date:
        return date.fromisoformat
    if kind is time:
        return time.fromisoformat
    if kind is bytes:
        return base64.b64decode
    if kind is Decimal:
        return Decimal
    return None


def _snapshot(conn: sa.Connection) -> sa.Connection:
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    return conn  # SQLite: one read transaction under WAL sees one snapshot


def _revision(conn: sa.Connection) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    return sorted(MigrationContext.configure(conn).get_current_heads())


def _tables() -> list[sa.Table]:
    return list(metadata.sorted_tables)  # parents before children


# -- writing an archive ---------------------------------------------------------


class _Writer:
    """Adds members to the tar, hashing each; the manifest goes last."""

    def __init__(self, tar: tarfile.TarFile, when: datetime) -> None:
        self.tar, self.mtime = tar, when.timestamp()
        self.members: dict[str, dict[str, Any]] = {}

    def add_file(self, name: str, handle: IO[bytes], size: int, digest: str) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self.mtime, 0o600
        self.tar.addfile(info, handle)
        self.members[name] = {"size": size, "sha256": digest}

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_file(name, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    def add_lines(self, name: str, lines: Iterable[bytes], spool: Path) -> int:
        digest, size, count = hashlib.sha256(), 0, 0
        with spool.open("w+b") as out:
            for line in lines:
                out.write(line)
                digest.update(line)
                size += len(line)
                count += 1
            out.seek(0)
            self.add_file(name, out, size, digest.hexdigest())
        spool.unlink()
        return count


def create(where: Where, to_dir: Path, *, keep: int | None = None) -> Path:
    """Write `schoolgate-backup-<UTC time>.tar.gz` in `to_dir` and return its path."""
    when = datetime.now(UTC).replace(microsecond=0)
    to_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{when:%Y%m%dT%H%M%SZ}"
    taken = [key[1] for key, _path in _backups(to_dir) if key[0] == stamp]
    n = max(taken) + 1 if taken else 1  # more than one in a second: -2, -3, ... after it
    final = to_dir / f"schoolgate-backup-{stamp}{f'-{n}' if n > 1 else ''}.tar.gz"
    fd, tmp_name = tempfile.mkstemp(prefix=".schoolgate-backup-", dir=to_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tempfile.TemporaryDirectory() as spool_dir:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                writer = _Writer(tar, when)
                manifest = _write_members(where, writer, Path(spool_dir), when)
                manifest["members"] = writer.members
                body = json.dumps(manifest, indent=1, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), when.timestamp(), 0o600
                tar.addfile(info, io.BytesIO(body))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if keep:
        prune(to_dir, keep)
    return final


def _write_members(where: Where, writer: _Writer, spool: Path, when: datetime) -> dict[str, Any]:
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": when.isoformat(), "notes": []}
    store = Store.open(where.url)
    try:
        manifest["store"] = _write_store(store, writer, spool)
        exported = audit.export(store, None, None, "json").encode()
        writer.add_bytes("audit/export.json", exported)
    finally:
        store.dispose()
    for path in school_ca.ca_files(where.ca):
        writer.add_bytes(f"ca/{path.name}", path.read_bytes())
    manifest["ca"] = school_ca.describe(where.ca).subject if school_ca.exists(where.ca) else None
    if manifest["ca"] is None:
        manifest["notes"].append(f"no CA in {where.ca}")
    files, note = policy_files(where.policy)
    if note:
        manifest["notes"].append(note)
    policy_dir = where.policy.resolve().parent
    origins: dict[str, str] = {}
    for path in files:
        name = _config_name(path, policy_dir)
        writer.add_bytes(name, path.read_bytes())
        origins[name] = str(path)
    manifest["config"] = {
        "policy": where.policy.resolve().relative_to(policy_dir).as_posix(),
        "policy_dir": str(policy_dir),
        "origins": origins,
    }
    return manifest


def _write_store(store: Store, writer: _Writer, spool: Path) -> dict[str, Any]:
    counts: dict[str, int] = {}
    with store.connect() as raw:
        conn = _snapshot(raw)
        revision = _revision(conn)
        present = set(sa.inspect(conn).get_table_names())
        for table in _tables():
            if table.name not in present:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execution_options(yield_per=BATCH).execute(
                sa.select(table).order_by(*order)
            )
            lines = (
                json.dumps(
                    {k: _encode(v) for k, v in row._mapping.items()},
                    ensure_ascii=False,
                    sort_keys=True,
                ).encode()
                + b"\n"
                for row in rows
            )
            counts[table.name] = writer.add_lines(f"store/{table.name}.jsonl", lines, spool / "t")
        head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).first()
    known = {t.name for t in _tables()} | {"alembic_version"}
    meta = {
        "dialect": store.dialect,
        "revision": revision,
        "rows": counts,
        "audit_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "tables_not_saved": sorted(present - known),
    }
    writer.add_bytes("store/meta.json", json.dumps(meta, indent=1).encode())
    return meta


def _backups(to_dir: Path) -> list[tuple[tuple[str, int], Path]]:
    """The backups in `to_dir`, oldest first, keyed by (time, number within that second)."""
    found: list[tuple[tuple[str, int], Path]] = []
    for path in to_dir.iterdir():
        match = NAME_PATTERN.match(path.name)
        if match:
            found.append(((match.group(1), int(match.group(2) or 1)), path))
    return sorted(found)


def prune(to_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `to_dir` (names sort by time)."""
    backups = [path for _key, path in _backups(to_dir)]
    gone = backups[:-keep] if keep > 0 else []
    for path in gone:
        path.unlink()
    return gone


# -- reading and checking an archive -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Archive:
    path: Path
    manifest: dict[str, Any]


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts


def check(path: Path) -> Archive:
    """Read the whole archive and check every member against the manifest."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            entries = {m.name: m for m in tar.getmembers()}
            if MANIFEST not in entries:
                raise BackupError(f"{path}: no {MANIFEST}: not a Schoolgate backup")
            handle = tar.extractfile(MANIFEST)
            manifest = json.loads(handle.read()) if handle else {}
            if manifest.get("format") != FORMAT:
                raise BackupError(f"{path}: unknown format {manifest.get('format')!r}")
            listed: dict[str, dict[str, Any]] = manifest.get("members", {})
            extra = set(entries) - set(listed) - {MANIFEST}
            missing = set(listed) - set(entries)
            if extra or missing:
                raise BackupError(
                    f"{path}: the archive does not match its manifest "
                    f"(extra: {sorted(extra)}; missing: {sorted(missing)})"
                )
            for name, want in listed.items():
                member = entries[name]
                if not _safe_name(name) or not member.isfile():
                    raise BackupError(f"{path}: unsafe member {name!r}")
                digest = hashlib.sha256()
                data = tar.extractfile(member)
                assert data is not None
                for chunk in iter(lambda: data.read(1 << 20), b""):  # noqa: B023
                    digest.update(chunk)
                if member.size != want["size"] or digest.hexdigest() != want["sha256"]:
                    raise BackupError(
                        f"{path}: {name} is damaged or was changed (its SHA-256 does not "
                        "match the manifest); nothing was restored"
                    )
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise BackupError(f"{path}: no such file") from exc
        raise BackupError(f"{path}: the archive is damaged ({exc}); nothing was restored") from exc
    return Archive(path, manifest)


# -- restoring -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Restored:
    rows: dict[str, int]
    audit: audit.VerifyResult
    files: list[Path]


def restore(archive_path: Path, where: Where, *, force: bool = False) -> Restored:
    """Check the archive, check nothing would be overwritten, then put everything back."""
    archive = check(archive_path)
    manifest = archive.manifest
    config = manifest["config"]
    policy_dir = where.policy.resolve().parent
    targets: dict[str, Path] = {}
    for name in manifest["members"]:
        if name.startswith("ca/"):
            targets[name] = where.ca / PurePosixPath(name).name
        elif name.startswith("config/policy/"):
            targets[name] = policy_dir / name.removeprefix("config/policy/")
        elif name.startswith("config/other/"):
            targets[name] = Path(config["origins"][name])
    with tarfile.open(archive.path, "r:gz") as tar:
        contents = {name: _read(tar, name) for name in targets}
        clashes = [
            str(path)
            for name, path in targets.items()
            if path.is_file() and path.read_bytes() != contents[name]
        ]
        if clashes and not force:
            raise BackupError(
                "restoring would replace files that differ from the backup (use --force): "
                + ", ".join(clashes)
            )
        _prepare_store(where, force)
        rows = _load_store(tar, manifest["store"], where.url)
    written = []
    for name, path in targets.items():
        secret = name in (f"ca/{school_ca.KEY_FILE}", f"ca/{school_ca.BASENAME}-ca.p12")
        if path.is_file() and path.read_bytes() == contents[name]:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(path, contents[name], 0o600 if secret else 0o644)
        written.append(path)
    store = Store.open(where.url)  # upgrades a backup from an older version
    try:
        result = audit.verify(store)
        head = manifest["store"].get("audit_head")
        if result.ok and head and head["seq"] != result.checked:
            result = audit.VerifyResult(
                False, result.checked, None, f"the backup had {head['seq']} audit records"
            )
    finally:
        store.dispose()
    return Restored(rows, result, written)


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise BackupError(f"{name} is not a file")
    return handle.read()


def _write_file(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _prepare_store(where: Where, force: bool) -> None:
    """The target database must be empty; with `force`, set the old one aside (or drop it)."""
    url = sa.make_url(where.url)
    if url.get_backend_name() == "sqlite":
        db = Path(url.database or "")
        if not db.exists():
            return
        if not force:
            raise BackupError(
                f"{db} already exists: stop the gateway and move it away, or use --force "
                "(which keeps it as a .before-restore copy)"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{db}{suffix}")
            if old.exists():
                shutil.move(old, f"{db}.before-restore-{stamp}{suffix}")
        return
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            present = set(sa.inspect(conn).get_table_names())
            ours = present & ({t.name for t in _tables()} | {"alembic_version"})
            if not ours:
                return
            if not force:
                raise BackupError(
                    f"the database {url.render_as_string(hide_password=True)} already holds "
                    "Schoolgate tables: restore into an empty one, or use --force to drop them"
                )
            for name in sorted(present):  # every table: later revisions may have added more
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


def _load_store(tar: tarfile.TarFile, meta: dict[str, Any], url: str) -> dict[str, int]:
    from alembic import command
    from alembic.script import ScriptDirectory

    from proxy_addons.store import _create_engine

    script = ScriptDirectory.from_config(alembic_config(script_location=MIGRATIONS))
    known = {rev.revision for rev in script.walk_revisions()}
    revision = meta["revision"]
    unknown = set(revision) - known
    if unknown:
        raise BackupError(
            f"the backup's store is at schema revision {', '.join(sorted(unknown))}, which "
            "this version of Schoolgate doesn't know: restore with the version that made it"
        )
    engine = _create_engine(url)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:  # all or nothing
            if revision:
                config = alembic_config(connection=conn, script_location=MIGRATIONS)
                for rev in revision:
                    command.upgrade(config, rev)
            present = set(sa.inspect(conn).get_table_names())
            loaded = [t for t in _tables() if t.name in present and t.name in meta["rows"]]
            for table in reversed(loaded):  # rows the migrations seeded (the audit head)
                conn.execute(table.delete())
            for table in loaded:
                counts[table.name] = _load_table(conn, table, tar, f"store/{table.name}.jsonl")
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn, [t for t in _tables() if t.name in counts])
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f"the store could not be loaded (nothing was kept): {exc}") from exc
    finally:
        engine.dispose()
    return counts


def _load_table(conn: sa.Connection, table: sa.Table, tar: tarfile.TarFile, name: str) -> int:
    handle = tar.extractfile(name)
    if handle is None:
        raise BackupError(f"{name} is not a file")
    columns = {c.name: c for c in table.columns}
    decoders = {n: _decoder(c) for n, c in columns.items()}
    count, batch = 0, []
    for line in handle:
        row = json.loads(line)
        for key, value in row.items():
            if key not in columns:
                raise BackupError(f"{name}: column {key!r} is not in table {table.name}")
            decode = decoders[key]
            if decode is not None and value is not None:
                row[key] = decode(value)
        batch.append(row)
        if len(batch) >= BATCH:
            conn.execute(table.insert(), batch)
            count, batch = count + len(batch), []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def _reset_sequences(conn: sa.Connection, tables: list[sa.Table]) -> None:
    """Rows came with their ids: move each serial's sequence past the largest."""
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is False or not isinstance(column.type, sa.Integer):
                continue
            conn.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence(:t, :c), "
                    f'COALESCE(MAX("{column.name}"), 1), MAX("{column.name}") IS NOT NULL) '
                    f'FROM "{table.name}"'
                ),
                {"t": table.name, "c": column.name},
            )
