"""The access log: records in the store (SQLite and PostgreSQL), JSON lines with rotation,
retention, `schoolgate log ...`, and end to end through a real gateway."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import bcrypt
import pytest
import sqlalchemy as sa

from proxy_addons.cli.main import main
from proxy_addons.record import access_files, access_records, access_store
from proxy_addons.record.access_files import JsonLines
from proxy_addons.record.access_records import AccessRecord
from proxy_addons.record.access_store import Query
from proxy_addons.record.access_writer import AccessWriter
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import access_log
from tests.conftest import VENV_BIN, Gateway, Upstream, copy_policy, start_mitmdump
from tests.pg import db_url  # noqa: F401  (a fixture)

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def _decision(**fields: object) -> dict[str, object]:
    """A `Decision.record()` as the Filter leaves it in flow.metadata."""
    base: dict[str, object] = {
        "action": "allow",
        "reason": "default",
        "profile": "ks2",
        "identified_by": "user",
        "host": "plain.test",
        "url": "https://plain.test/",
        "user": "pupil",
        "ip": "10.0.0.5",
        "rule": None,
        "category": None,
        "category_label": None,
        "list_source": None,
        "entry": None,
        "decrypt": True,
        "must_decrypt": False,
        "allowed_when": (),
        "unblock_id": None,
        "stage": "request",
        "reference": None,
        "decide_seconds": 0.001,
    }
    return base | fields


def _record(at: datetime, **fields: object) -> AccessRecord:
    return access_records.build(_decision(**fields), at, method="GET")


def _blocked(at: datetime, host: str = "www.chatter.test", **fields: object) -> AccessRecord:
    return _record(
        at,
        action="block",
        reason="rule",
        host=host,
        url=f"https://{host}/feed?session=abc",
        category="social",
        rule="ks2: block adult, social",
        list_source="lists/social.txt",
        entry="chatter.test",
        reference="SG-TEST-1",
        **fields,
    )


# -- records -----------------------------------------------------------------


def test_a_record_holds_the_listed_fields_and_nothing_else() -> None:
    record = _record(
        NOW,
        host="www.google.com",
        url="https://www.google.com/search?q=how+to+stay+safe&client=x&sid=123",
        user="Pupil",
    )
    as_json = record.as_dict()
    assert set(as_json) == {
        "time",
        "user",
        "profile",
        "ip",
        "device_name",
        "device_id",
        "method",
        "host",
        "url",
        "search_term",
        "decision",
        "reason",
        "category",
        "rule",
        "list",
        "entry",
        "unblock_id",
        "reference",
        "stage",
        "enforced",  # safe search enforced (issue 7)
        "check_visit",  # a termly check's own visit (issue 16)
    }
    assert as_json["time"] == "2026-03-10T10:00:00.000+00:00"
    assert as_json["user"] == "pupil"  # user names compare in lower case, as in the policy
    assert as_json["url"] == "https://www.google.com/search?q=how+to+stay+safe"
    assert as_json["search_term"] == "how to stay safe"
    assert as_json["decision"] == "allow"


def test_a_failed_decision_is_filled_in_from_the_request() -> None:
    decision = {"action": "block", "reason": "unavailable", "profile": "unknown", "host": "a.test"}
    record = access_records.build(
        decision | {"stage": "request"},
        NOW,
        method="GET",
        user="pupil",
        ip="10.0.0.9",
        url="http://u:secret@a.test/x?y=1",
    )
    assert (record.user, record.ip, record.url) == ("pupil", "10.0.0.9", "http://a.test/x")
    assert "secret" not in json.dumps(record.as_dict())


# -- the store ---------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def test_records_are_written_and_found_by_every_filter(store: Store) -> None:
    h = timedelta(hours=1)
    access_store.write_rows(
        store,
        [
            _record(NOW - 3 * h, user="PUPIL"),
            _blocked(NOW - 2 * h),
            _blocked(NOW - h, host="friends.test", user="pupil2", ip="10.0.0.6"),
            _record(
                NOW,
                host="www.bing.com",
                url="https://www.bing.com/search?q=100%25+Safe_Search",
                profile="staff",
                user="teacher",
            ),
            _blocked(NOW, host="xchatter.test"),
        ],
    )

    def hosts(**query: object) -> list[str]:
        return [r.host for r in access_store.search(store, Query(**query))]  # type: ignore[arg-type]

    assert hosts(user="Pupil") == ["plain.test", "www.chatter.test", "xchatter.test"]
    assert hosts(ip="10.0.0.6") == ["friends.test"]
    assert hosts(profile="staff") == ["www.bing.com"]
    assert hosts(category="social", user="pupil") == ["www.chatter.test", "xchatter.test"]
    assert hosts(decision="allow") == ["plain.test", "www.bing.com"]
    assert hosts(host="chatter.test") == ["www.chatter.test"]  # and subdomains, not xchatter
    assert hosts(term="SAFE") == ["www.bing.com"]
    assert hosts(term="100%") == ["www.bing.com"]
    assert hosts(term="0%_") == []  # % and _ are literal, not wildcards
    assert hosts(start=NOW - 2 * h, end=NOW) == ["www.chatter.test", "friends.test"]
    assert hosts(limit=2) == ["www.bing.com", "xchatter.test"]  # the newest, oldest first

    found = access_store.search(store, Query(host="www.chatter.test"))[0]
    assert found == _blocked(NOW - 2 * h)  # every field comes back as written
    assert found.url == "https://www.chatter.test/feed"
    assert found.time.tzinfo is not None


def test_purge_deletes_only_rows_older_than_the_retention(store: Store) -> None:
    access_store.write_rows(store, [_record(NOW - timedelta(days=d)) for d in (0, 29, 31, 400)])
    rows, _ = access_store.purge(store, None, 30, NOW, timezone=UTC)
    assert rows == 2
    with store.connect() as conn:
        left = conn.execute(sa.select(access_log.c.at).order_by(access_log.c.at)).scalars().all()
    assert left == [NOW - timedelta(days=29), NOW]


def test_writer_writes_json_and_store_and_purges_at_start(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "log" / "access.jsonl"
    path.parent.mkdir()
    old_file = path.with_name("access.jsonl.7")
    old_file.write_text(json.dumps(_record(NOW - timedelta(days=40)).as_dict()) + "\n")
    recent_file = path.with_name("access.jsonl.6")
    recent_file.write_text(json.dumps(_record(NOW - timedelta(days=3)).as_dict()) + "\n")
    access_store.write_rows(store, [_record(NOW - timedelta(days=40))])

    writer = AccessWriter(path, store, lambda: 30, flush_seconds=0.05, clock=lambda: NOW)
    writer.start()
    for minute in range(3):
        writer.submit(_blocked(NOW + timedelta(minutes=minute)))
    writer.close()

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["time"] for x in lines] == [
        (NOW + timedelta(minutes=m)).isoformat(timespec="milliseconds") for m in range(3)
    ]
    assert len(access_store.search(store, Query())) == 3  # the 40-day-old row is gone
    assert not old_file.exists() and recent_file.exists()


def test_a_store_that_is_down_loses_nothing_from_the_json(tmp_path: Path) -> None:
    down = Store(sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}"))
    path = tmp_path / "access.jsonl"
    writer = AccessWriter(path, down, lambda: None, flush_seconds=0.05)
    writer.start()
    writer.submit(_record(NOW))
    writer.close()
    assert len(path.read_text().splitlines()) == 1


# -- JSON lines --------------------------------------------------------------


def test_json_lines_rotate_at_the_cap_and_keep_n_files(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    size = len(json.dumps(_record(NOW).as_dict(), separators=(",", ":"))) + 1
    log = JsonLines(path, max_bytes=2 * size, backups=3)
    for i in range(11):
        log.write(_record(NOW + timedelta(seconds=i)))
    log.close()
    rotated = [path.with_name(f"access.jsonl.{n}") for n in (1, 2, 3)]
    assert access_files.rotated_files(path) == rotated
    assert all(p.stat().st_size <= 2 * size for p in [path, *access_files.rotated_files(path)])
    newest = [access_files.newest_time(p) for p in [path, *access_files.rotated_files(path)]]
    assert newest == [NOW + timedelta(seconds=s) for s in (10, 9, 7, 5)]


def test_purge_removes_rotated_files_whose_newest_record_is_old(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    log = JsonLines(path, max_bytes=1, backups=5)  # one record a file
    for days in (50, 40, 20, 10, 0):
        log.write(_record(NOW - timedelta(days=days)))
    log.close()
    removed = access_files.purge_files(path, NOW - timedelta(days=30))
    assert sorted(p.name for p in removed) == ["access.jsonl.3", "access.jsonl.4"]
    assert path.exists()  # the current file is left to the writer


def test_the_current_file_is_emptied_once_even_its_newest_record_is_old(tmp_path: Path) -> None:
    log = JsonLines(tmp_path / "access.jsonl", max_bytes=0, backups=1)
    log.write(_record(NOW - timedelta(days=40)))
    assert not log.drop_if_older(NOW - timedelta(days=50))
    assert log.drop_if_older(NOW - timedelta(days=30))
    log.write(_record(NOW))
    log.close()
    assert access_files.newest_time(log.path) == NOW
    assert len(log.path.read_text().splitlines()) == 1


# -- end to end ----------------------------------------------------------------


PASSWORDS = {"pupil": "p-secret-pass", "teacher": "t-secret-pass"}


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("access")
    policy = copy_policy(tmp)
    (policy.parent / "users.htpasswd").write_text(
        "".join(
            f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
            for name, pw in PASSWORDS.items()
        )
    )
    text = policy.read_text().replace(
        "identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:"
    )
    policy.write_text(text)
    gw = start_mitmdump(
        policy,
        tmp / "var",
        upstream,
        extra=[
            "--set",
            "schoolgate_access_log_max_bytes=1500",
            "--set",
            "schoolgate_access_log_flush_ms=100",
        ],
    )
    pupil, teacher = (f"{u}:{p}" for u, p in PASSWORDS.items())
    try:
        assert gw.curl("http://plain.test/hello?x=1&token=abc", user=pupil).returncode == 0
        assert gw.curl("https://www.chatter.test/feed?s=1", user=pupil).stdout.endswith("403")
        gw.curl("https://www.google.com/search?q=how+to+stay+safe&client=x", user=pupil)
        assert "403" in gw.curl("https://bank.test/", user=pupil).stderr  # refused CONNECT
        # Host-only and allowed for staff: passed through without decryption.
        gw.curl("https://bank.test/", "-k", user=teacher)
        # An allowed CONNECT whose TLS names a blocked host: refused at the TLS stage.
        gw.curl("https://bank.test/", "--connect-to", "bank.test:443:plain.test:443", user=pupil)
        # A tunnel carrying plain HTTP: its request is logged, not the CONNECT as well.
        assert gw.curl("http://plain.test/tunnel", "--proxytunnel", user=pupil).returncode == 0
        # Last, as it marks the device as not trusting the school's CA: the handshake fails,
        # no request comes, and the TLS-stage decision is what gets logged.
        untrusting = ["curl", "-sS", "--max-time", "10", "-x", gw.proxy, "-U", pupil]
        subprocess.run([*untrusting, "https://games.test/"], capture_output=True, timeout=20)
        _wait_for_rows(gw, len(EXPECTED))
        yield gw
    finally:
        gw.stop()


def _store(gw: Gateway) -> Store:
    return Store.open(store_url(gw.var))


def _wait_for_rows(gw: Gateway, count: int) -> None:
    store = _store(gw)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if len(access_store.search(store, Query(limit=1000))) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"fewer than {count} access records:\n{gw.log_text()}")
    finally:
        store.dispose()


def _json_records(gw: Gateway) -> list[dict[str, object]]:
    path = gw.var / access_files.JSON_FILE
    files = [*reversed(access_files.rotated_files(path)), path]
    return [json.loads(line) for p in files for line in p.read_text().splitlines()]


EXPECTED: list[dict[str, object]] = [
    {
        "user": "pupil",
        "profile": "ks2",
        "method": "GET",
        "host": "plain.test",
        "url": "http://plain.test/hello",
        "search_term": None,
        "decision": "allow",
        "stage": "request",
    },
    {
        "user": "pupil",
        "method": "GET",
        "host": "www.chatter.test",
        "url": "https://www.chatter.test/feed",
        "decision": "block",
        "reason": "rule",
        "category": "social",
        "entry": "chatter.test",
        "stage": "request",
    },
    {
        "user": "pupil",
        "method": "GET",
        "host": "www.google.com",
        "url": "https://www.google.com/search?q=how+to+stay+safe",
        "search_term": "how to stay safe",
        "decision": "allow",
        "stage": "request",
    },
    {
        "user": "pupil",
        "method": "CONNECT",
        "host": "bank.test",
        "url": None,
        "decision": "block",
        "category": "banking",
        "stage": "connect",
    },
    {
        "user": "teacher",
        "profile": "staff",
        "method": None,
        "host": "bank.test",
        "url": None,
        "decision": "allow",
        "stage": "tls",
    },
    {
        "user": "pupil",
        "method": None,
        "host": "bank.test",
        "url": None,
        "decision": "block",
        "category": "banking",
        "stage": "tls",
    },
    {"user": "pupil", "method": "GET", "url": "http://plain.test/tunnel", "stage": "request"},
    {"method": None, "host": "games.test", "url": None, "decision": "allow", "stage": "tls"},
]


def test_each_decision_is_logged_once_in_json_and_store(logged: Gateway) -> None:
    from_json = _json_records(logged)
    store = _store(logged)
    try:
        from_store = [r.as_dict() for r in access_store.search(store, Query(limit=1000))]
    finally:
        store.dispose()
    assert len(from_json) == len(EXPECTED), from_json
    assert from_store == from_json  # the same records, in the same order
    for got, want in zip(from_json, EXPECTED, strict=True):
        assert got == got | want
        assert got["ip"] == "127.0.0.1"
        assert (got["reference"] is not None) == (got["decision"] == "block")
    text = "\n".join(p.read_text() for p in (logged.var / "log").iterdir())
    assert not any(pw in text for pw in PASSWORDS.values())
    assert "token" not in text and "client=x" not in text


def test_the_log_rotates_at_its_cap(logged: Gateway) -> None:
    path = logged.var / access_files.JSON_FILE
    assert access_files.rotated_files(path)
    assert all(p.stat().st_size <= 1500 for p in [path, *access_files.rotated_files(path)])


def _cli(gw: Gateway, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main([*args, "--var", str(gw.var), "--policy", str(gw.policy)])
    out = capsys.readouterr().out
    assert code == 0
    return out


def test_log_search_answers_by_term_and_category(
    logged: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    by_term = json.loads(
        _cli(logged, capsys, "log", "search", "--term", "safe", "--format", "json")
    )
    assert [r["search_term"] for r in by_term] == ["how to stay safe"]
    social = json.loads(
        _cli(logged, capsys, "log", "search", "--category", "social", "--format", "json")
    )
    assert [(r["host"], r["decision"]) for r in social] == [("www.chatter.test", "block")]
    today = datetime.now(ZoneInfo("Europe/London")).date().isoformat()  # school time
    csv_out = _cli(
        logged, capsys, "log", "search", "--user", "pupil", "--decision", "block",
        "--from", today, "--to", today, "--format", "csv",
    )  # fmt: skip
    assert csv_out.splitlines()[0].startswith("time,user,profile,ip")
    assert len(csv_out.splitlines()) == 1 + 3  # chatter, the refused CONNECT and TLS


def test_log_search_finds_the_block_a_pupil_quotes_by_its_reference(
    logged: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pupil reads the block page's reference out; the DSL finds that one block."""
    blocks = [r for r in _json_records(logged) if r["decision"] == "block"]
    assert len({r["reference"] for r in blocks}) == len(blocks) > 1
    for wanted in blocks:
        for spelled in (wanted["reference"], f" {wanted['reference'].lower()} "):
            found = json.loads(
                _cli(logged, capsys, "log", "search", "--reference", spelled, "--format", "json")
            )
            assert found == [wanted]
    nobody = _cli(logged, capsys, "log", "search", "--reference", "SG-0000-0000", "--format", "csv")
    assert len(nobody.splitlines()) == 1  # the header only


def test_log_search_prints_a_table_from_the_command_line(logged: Gateway) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "schoolgate"), "log", "search", "--host", "google.com"]
        + ["--var", str(logged.var), "--policy", str(logged.policy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == [
        "time", "user", "device", "profile", "decision", "category", "address", "search",
    ]  # fmt: skip
    assert "pupil" in row and "ALLOW" in row and row.endswith("how to stay safe")


def test_log_purge_removes_old_rows_and_files(
    logged: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    old = datetime.now(UTC) - timedelta(days=91)  # the test policy keeps 90 days
    store = _store(logged)
    try:
        access_store.write_rows(store, [_record(old, host="old.test")])
        old_file = logged.var / "log" / "access.jsonl.99"
        old_file.write_text(json.dumps(_record(old).as_dict()) + "\n")
        out = _cli(logged, capsys, "log", "purge")
        assert out.strip() == "purged 1 records and 1 files older than 90 days"
        assert not old_file.exists()
        assert access_store.search(store, Query(host="old.test")) == []
        assert len(access_store.search(store, Query(limit=1000))) == len(EXPECTED)
    finally:
        store.dispose()
