"""`schoolgate backup` and `schoolgate restore` on SQLite and PostgreSQL: back up, wipe,
restore, verify; damaged archives refused; a backup taken while the store is written."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.events import Audience, Event
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.alerts.routing import Route
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind, Status
from proxy_addons.ops import school_ca
from proxy_addons.ops.backup.archive import Where, check
from proxy_addons.ops.backup.create import create
from proxy_addons.store import Store
from proxy_addons.store.schema import metadata, reports
from proxy_addons.workflow import audit
from proxy_addons.workflow.accounts import add_account
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow
from tests.conftest import ROOT, VENV_BIN, copy_policy
from tests.pg import PG_ENV, PG_SKIP, _fresh_pg_database, is_postgresql
from tests.pg import db_url as db_url  # noqa: F401  (a fixture)

SCHOOLGATE = str(VENV_BIN / "schoolgate")


def sg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCHOOLGATE, *args], capture_output=True, text=True, cwd=ROOT)


def alert(key: str) -> Event:
    return Event(
        kind="risk_phrase",
        severity=5,
        audience=Audience.SAFEGUARDING,
        summary="Risk phrase in a search (severity 5)",
        fields={"user": "pupil", "search": "how to k1ll mys3lf"},
        fold_key=key,
        at=datetime.now(UTC),
        timezone="Europe/London",
    )


class Site:
    """A gateway's things laid out as an installation has them, on either database."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.policy = copy_policy(tmp / "etc")
        (self.policy.parent / "enrolment-secret").write_text("s3cret-enrolment\n")
        text = self.policy.read_text().replace(
            "notifications:", "devices: {enrolment_secret_file: enrolment-secret}\nnotifications:"
        )
        self.policy.write_text(text)
        self.pg = is_postgresql(url)
        self.var = tmp / "var" if self.pg else Path(sa.make_url(url).database or "").parent
        self.url = url
        self.args = ["--policy", str(self.policy), "--var", str(self.var)]
        if self.pg:
            self.args += ["--dsn", url]
        school_ca.create(self.var / "ca", "Test Primary")

    def seed(self) -> None:
        store = Store.open(self.url)
        policy = load_policy(self.policy)
        flow = UnblockWorkflow(store, lambda: policy)

        def ask(target: str) -> str:
            return flow.request(
                Actor("teacher", "10.20.0.9"),
                target=target,
                audience_kind=AudienceKind.PROFILE,
                audience=["ks2"],
                minutes=40,
                reason="debate preparation",
            ).id

        flow.approve(Actor("dsl"), ask("https://chatter.test/unit"), "fine for the lesson")
        ask("https://video.test/watch")  # stays pending
        add_account(store, "dsl", "correct horse battery", ["dsl"], email="dsl@test.example")
        add_account(store, "teacher", "staple battery horse", ["staff"])
        outbox = AlertOutbox(store)
        outbox.enqueue(alert("pupil|one"), [Route("email", ("dsl@test.example",))], 10)
        with store.begin() as conn:
            conn.execute(
                reports.insert().values(
                    kind="report",
                    at=datetime.now(UTC),
                    reference="R-1",
                    url="http://x.test/",
                    text="blocked by mistake",
                    username="pupil",
                    ip="10.0.0.5",
                    profile="ks2",
                )
            )
        store.dispose()

    def wipe(self) -> None:
        if self.pg:
            engine = sa.create_engine(self.url, poolclass=sa.NullPool)
            with engine.begin() as conn:
                for name in sa.inspect(conn).get_table_names():
                    conn.execute(sa.text(f'DROP TABLE "{name}" CASCADE'))
            engine.dispose()
        else:
            for path in self.var.glob("schoolgate.db*"):
                path.unlink()
        shutil.rmtree(self.var / "ca")
        shutil.rmtree(self.policy.parent)


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order."""
    store = Store.open(url)
    out: dict[str, list[dict[str, Any]]] = {}
    with store.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            out[table.name] = [dict(r._mapping) for r in rows]
    store.dispose()
    return out


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_backup_wipe_restore_verify(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    site = Site(tmp_path, db_url)
    site.seed()
    before = dump(db_url)
    config, ca = files_under(site.policy.parent), files_under(site.var / "ca")
    assert len(before["unblocks"]) == 2 and len(before["alert_outbox"]) == 1
    assert len(before["accounts"]) == 2 and len(before["audit_log"]) >= 3

    made = sg("backup", "--to", str(tmp_path / "backups"), *site.args)
    assert made.returncode == 0, made.stderr
    [archive] = (tmp_path / "backups").glob("schoolgate-backup-*.tar.gz")
    assert archive.stat().st_mode & 0o077 == 0  # it holds the CA key and password hashes
    manifest = check(archive).manifest
    assert manifest["store"]["rows"]["unblocks"] == 2
    assert "config/policy/enrolment-secret" in manifest["members"]
    assert "config/policy/lists/social.txt" in manifest["members"]
    assert f"ca/{school_ca.KEY_FILE}" in manifest["members"]
    for member in manifest["members"].values():
        assert len(member["sha256"]) == 64

    site.wipe()
    restored = sg("restore", str(archive), *site.args)
    assert restored.returncode == 0, restored.stderr
    assert "audit: OK" in restored.stdout

    assert dump(db_url) == before
    assert files_under(site.policy.parent) == config
    assert files_under(site.var / "ca") == ca
    assert (site.var / "ca" / school_ca.KEY_FILE).stat().st_mode & 0o077 == 0
    verified = sg("audit", "verify", *site.args)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stderr

    # The restored store carries on: unblocks in force, the queued alert still queued, and
    # new rows get new ids (PostgreSQL's sequences were moved past the restored ones).
    store = Store.open(db_url)
    policy = load_policy(site.policy)
    flow = UnblockWorkflow(store, lambda: policy)
    statuses = sorted(u.status.value for u in flow.list())
    assert statuses == sorted([Status.ACTIVE.value, Status.PENDING.value])
    outbox = AlertOutbox(store)
    assert outbox.pending("email") == 1
    [new_id] = outbox.enqueue(alert("pupil|two"), [Route("email", ("dsl@test.example",))], 10)
    assert new_id > before["alert_outbox"][0]["id"]
    flow.approve(Actor("deputy"), [u for u in flow.list() if u.status is Status.PENDING][0].id)
    assert audit.verify(store).ok
    store.dispose()


def test_restore_refuses_to_overwrite_a_store_without_force(
    tmp_path: Path,
    db_url: str,  # noqa: F811
) -> None:
    site = Site(tmp_path, db_url)
    site.seed()
    archive = create(Where(site.policy, site.var, site.url if site.pg else None), tmp_path / "b")
    refused = sg("restore", str(archive), *site.args)
    assert refused.returncode == 1 and "--force" in refused.stderr
    forced = sg("restore", str(archive), "--force", *site.args)
    assert forced.returncode == 0, forced.stderr
    assert len(dump(db_url)["unblocks"]) == 2


def _rewrite(archive: Path, target: Path, change: Any) -> None:
    """Copy `archive` to `target`, passing each member's bytes through `change`."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(target, "w:gz") as out:
        for member in src.getmembers():
            handle = src.extractfile(member)
            data = change(member.name, handle.read() if handle else b"")
            if data is None:
                continue
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def test_a_damaged_or_altered_archive_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    site = Site(tmp_path, f"sqlite:///{tmp_path / 'var' / 'schoolgate.db'}")
    site.seed()
    archive = create(Where(site.policy, site.var), tmp_path / "b")
    site.wipe()

    def refused(path: Path) -> str:
        result = sg("restore", str(path), *site.args)
        assert result.returncode == 1
        assert not (site.var / "schoolgate.db").exists() and not (site.var / "ca").exists()
        assert not site.policy.exists()
        return result.stderr

    # A flipped byte inside the compressed data.
    flipped = tmp_path / "flipped.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    assert "damaged" in refused(flipped)

    # A row edited (an unblock extended by someone with the file), the manifest left as it was.
    def extend(name: str, body: bytes) -> bytes:
        if name == "store/unblocks.jsonl":
            return body.replace(b'"ends_at": "2', b'"ends_at": "3', 1)
        return body

    edited = tmp_path / "edited.tar.gz"
    _rewrite(archive, edited, extend)
    message = refused(edited)
    assert "store/unblocks.jsonl" in message and "SHA-256" in message

    # A member slipped in that the manifest does not list.
    def add(name: str, body: bytes) -> bytes:
        return body

    extra = tmp_path / "extra.tar.gz"
    _rewrite(archive, extra, add)
    with tarfile.open(extra, "r:gz") as src:
        members = [(m, src.extractfile(m)) for m in src.getmembers()]
        payload = [(m, h.read() if h else b"") for m, h in members]
    with tarfile.open(extra, "w:gz") as out:
        for member, body in payload:
            out.addfile(member, io.BytesIO(body))
        info = tarfile.TarInfo("config/policy/evil.yaml")
        info.size = 4
        out.addfile(info, io.BytesIO(b"evil"))
    assert "does not match its manifest" in refused(extra)

    # Not gzip at all, and a truncated one.
    (tmp_path / "junk.tar.gz").write_bytes(b"not a backup")
    assert "damaged" in refused(tmp_path / "junk.tar.gz")
    (tmp_path / "short.tar.gz").write_bytes(archive.read_bytes()[:-200])
    assert "damaged" in refused(tmp_path / "short.tar.gz")

    # The untouched archive still restores.
    assert sg("restore", str(archive), *site.args).returncode == 0


def test_a_backup_taken_while_the_store_is_written_is_consistent(
    tmp_path: Path,
    db_url: str,  # noqa: F811
) -> None:
    site = Site(tmp_path, db_url)
    site.seed()
    store = Store.open(db_url)
    stop = threading.Event()
    appended = [0]

    def writer() -> None:
        while not stop.is_set():
            with store.begin() as conn:
                audit.append(conn, actor="it", action="test.write", subject="s", detail={})
            appended[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        archives = [
            create(Where(site.policy, site.var, site.url if site.pg else None), tmp_path / "b")
            for _ in range(3)
        ]
    finally:
        stop.set()
        thread.join()
        store.dispose()
    assert appended[0] > 0
    heads = [check(a).manifest["store"]["audit_head"]["seq"] for a in archives]
    for archive, head in zip(archives, heads, strict=True):
        rows = _member(archive, "store/audit_log.jsonl").count(b"\n")
        assert rows == head  # the rows and the head were read in one snapshot
    site.wipe()
    result = sg("restore", str(archives[-1]), *site.args)
    assert result.returncode == 0, result.stderr
    assert f"{heads[-1]} audit records, chain intact" in result.stdout


def _member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def test_keep_prunes_old_backups_and_names_never_clash(tmp_path: Path) -> None:
    site = Site(tmp_path, f"sqlite:///{tmp_path / 'var' / 'schoolgate.db'}")
    where = Where(site.policy, site.var)
    made = [create(where, tmp_path / "b", keep=2) for _ in range(4)]
    left = sorted((tmp_path / "b").iterdir())
    assert len(set(made)) == 4 and len(left) == 2 and set(left) == set(made[-2:])
    assert all(gzip.open(p).read(1) for p in left)


def test_a_broken_policy_still_gets_its_whole_folder_backed_up(tmp_path: Path) -> None:
    site = Site(tmp_path, f"sqlite:///{tmp_path / 'var' / 'schoolgate.db'}")
    site.policy.write_text(site.policy.read_text().replace("profiles:", "profiles: [", 1))
    (site.policy.parent / "notes.txt").write_text("kept too")
    made = sg("backup", "--to", str(tmp_path / "b"), *site.args)
    assert made.returncode == 0, made.stderr
    assert "the policy did not load" in made.stderr
    [archive] = (tmp_path / "b").iterdir()
    members = check(archive).manifest["members"]
    assert "config/policy/school.yaml" in members and "config/policy/notes.txt" in members
    assert _member(archive, "config/policy/school.yaml") == site.policy.read_bytes()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (only: this test goes from SQLite to PostgreSQL)."""
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(PG_SKIP)
    yield from _fresh_pg_database(dsn)


def test_a_sqlite_backup_restores_into_postgresql(tmp_path: Path, pg_url: str) -> None:
    source = Site(tmp_path / "src", f"sqlite:///{tmp_path / 'src' / 'var' / 'schoolgate.db'}")
    source.seed()
    before = dump(source.url)
    archive = create(Where(source.policy, source.var), tmp_path / "b")
    policy = tmp_path / "dst" / "etc" / "policy" / "school.yaml"
    target = ["--policy", str(policy), "--var", str(tmp_path / "dst" / "var"), "--dsn", pg_url]
    result = sg("restore", str(archive), *target)
    assert result.returncode == 0, result.stderr
    assert dump(pg_url) == before
    assert policy.read_bytes() == source.policy.read_bytes()
    assert sg("audit", "verify", *target).returncode == 0
