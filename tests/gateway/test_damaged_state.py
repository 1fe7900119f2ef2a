"""Damaged state never opens the filter, and failures on a full disk are never silent.

- A list index damaged on disk (zeroed in place at the same size, or one byte changed,
  or a whole valid index of other lists put under its name) is never served:
  `ListIndex.open` refuses it and `open_index` rebuilds it; a real mitmdump restarted
  on it rebuilds it; one damaged under a running gateway is caught when its file
  changes and blocks every request until it is rebuilt. `status`, `doctor`, the
  metrics and a technical alert say so.
- On a full disk (a tiny tmpfs as var/, as root: CI runs as root) a list edit that cannot
  be applied shows in the live status, the metrics and the CLI, and is applied by itself
  once space is freed; lost access-log records are counted and alerted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from proxy_addons.cli import main as cli
from proxy_addons.core.decide import Identity, Request, decide
from proxy_addons.core.hosts import canonical_host
from proxy_addons.core.lists import build_process as listindex
from proxy_addons.core.lists.build import build_index, open_index
from proxy_addons.core.lists.index import ListIndex, verify_file
from proxy_addons.core.lists.layout import (
    PREFIX,
    CategorySources,
    Expected,
    IndexDamaged,
    TransientListError,
    error_may_pass,
)
from proxy_addons.core.lists.sources import ListSource, ListSourceError
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.runtime import PolicyLoadError, PolicyRuntime
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.ops.doctor.findings import Level
from proxy_addons.ops.doctor.gateway import check_gateway
from proxy_addons.ops.doctor.lists import check_lists
from proxy_addons.record.access_records import build
from proxy_addons.record.access_writer import AccessWriter
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alert_outbox
from tests.conftest import Gateway, Upstream, copy_policy, free_port, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status

# In place (same inode, same size): zeroed, one byte flipped. Replaced: a whole, valid index
# of other lists renamed over it (a copy, a restore, a swap), which passes any checksum.
DAMAGE = ("zeroed", "flipped", "swapped")


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)


def damage(path: Path, how: str) -> None:
    """Change the file in place (same inode, same size), as a disk or a stray write would,
    or put another index under its name."""
    if how == "swapped":
        swap_in_other_lists(path)
        return
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if how == "zeroed":
            fh.write(bytes(size))
        else:  # one byte in the middle of the table (the keys: what decides)
            header = int.from_bytes(path.read_bytes()[8:16], "little")
            at = PREFIX + header + (size - PREFIX - header) // 2
            fh.seek(at)
            byte = fh.read(1)[0]
            fh.seek(at)
            fh.write(bytes([byte ^ 0x5A]))
        fh.flush()
        os.fsync(fh.fileno())
    assert path.stat().st_size == size


def swap_in_other_lists(path: Path) -> None:
    """Rename a valid index of a 4-entry list set (none of the test policy's sites, the
    same category names) over `path`, as a copied or restored file would land."""
    folder = path.parent.parent / f"other-lists-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "adult.txt").write_text("other-adult.test\nelse-adult.test\n")
    (folder / "social.txt").write_text("other-social.test\nelse-social.test\n")
    cats = [
        CategorySources(name, (ListSource("domains", folder / f"{name}.txt"),))
        for name in ("adult", "social")
    ]
    other = build_index(cats, folder / "index")
    with ListIndex.open(other) as index:
        assert index.entry_count == 4 and index.verify() is None  # whole and valid
    os.replace(other, path)


def expected_of(policy: Path) -> Expected:
    """What the index of this policy's lists must say in its header."""
    return Expected.of([c.sources for c in load_policy(policy).categories.values()])


def social(tmp_path: Path) -> list[CategorySources]:
    lst = tmp_path / "social.txt"
    lst.write_text("chatter.test\nfriends.test\n" + "".join(f"s{i}.test\n" for i in range(200)))
    return [CategorySources("social", (ListSource("domains", lst),))]


# -- the index file ----------------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("in_subprocess", [False, True], ids=["in-process", "subprocess"])
def test_a_damaged_index_is_refused_and_rebuilt_never_served(
    tmp_path: Path, how: str, in_subprocess: bool
) -> None:
    cats = social(tmp_path)
    path = build_index(cats, tmp_path / "index")
    damage(path, how)
    with pytest.raises(IndexDamaged, match="damaged"):
        ListIndex.open(path, Expected.of(cats))
    assert verify_file(path, Expected.of(cats)) is not None
    told: list[str] = []
    with open_index(
        cats, tmp_path / "index", in_subprocess=in_subprocess, on_damaged=told.append
    ) as index:
        assert [m.category for m in index.match_host("www.chatter.test")] == ["social"]
        assert index.verify() is None
    assert len(told) == 1 and str(path) in told[0]
    assert verify_file(path, Expected.of(cats)) is None  # rebuilt on disk, under the same name


def older_index_of_the_same_list(path: Path, cats: list[CategorySources]) -> None:
    """The index of this very list file before its last edit, renamed over `path`."""
    lst = cats[0].sources[0].path
    text, st = lst.read_text(), lst.stat()
    lst.write_text(text.replace("chatter.test\n", ""))
    old = build_index(cats, path.parent)
    lst.write_text(text)
    os.utime(lst, ns=(st.st_atime_ns, st.st_mtime_ns))  # the list as it is now: as before
    os.replace(old, path)


def empty_index(path: Path, cats: list[CategorySources]) -> None:
    """An index of the same category with an empty list (nothing blocked), renamed over it."""
    empty = path.parent.parent / "empty.txt"
    empty.write_text("")
    os.replace(
        build_index(
            [CategorySources("social", (ListSource("domains", empty),))],
            path.parent.parent / "empty-index",
        ),
        path,
    )


OTHER_INDEXES: dict[str, Callable[[Path, list[CategorySources]], None]] = {
    "other lists": lambda path, _cats: swap_in_other_lists(path),
    "older contents": older_index_of_the_same_list,
    "empty list": empty_index,
}


@pytest.mark.parametrize("swap", OTHER_INDEXES)
@pytest.mark.parametrize("in_subprocess", [False, True], ids=["in-process", "subprocess"])
def test_an_index_of_other_lists_under_the_name_is_damage_never_served(
    tmp_path: Path, swap: str, in_subprocess: bool
) -> None:
    cats = social(tmp_path)
    path = build_index(cats, tmp_path / "index")
    OTHER_INDEXES[swap](path, cats)
    with ListIndex.open(path) as foreign:  # whole: its checksum matches ...
        assert foreign.match_host("chatter.test") == []  # ... and it lists nothing of ours
    with pytest.raises(IndexDamaged, match="an index of other lists"):
        ListIndex.open(path, Expected.of(cats))
    told: list[str] = []
    with open_index(
        cats, tmp_path / "index", in_subprocess=in_subprocess, on_damaged=told.append
    ) as index:
        assert [m.category for m in index.match_host("chatter.test")] == ["social"]
        assert index.path == path and index.verify() is None
    assert len(told) == 1 and "an index of other lists" in told[0] and str(path) in told[0]
    assert verify_file(path, Expected.of(cats)) is None


@pytest.mark.parametrize("in_subprocess", [False, True], ids=["in-process", "subprocess"])
def test_build_index_never_reuses_an_index_of_other_lists(
    tmp_path: Path, in_subprocess: bool
) -> None:
    cats = social(tmp_path)
    path = build_index(cats, tmp_path / "index")
    swap_in_other_lists(path)
    assert build_index(cats, tmp_path / "index", in_subprocess=in_subprocess) == path
    with ListIndex.open(path, Expected.of(cats)) as index:
        assert index.match_host("friends.test")


def test_verify_sees_another_index_renamed_over_the_mapped_one(tmp_path: Path) -> None:
    cats = social(tmp_path)
    index = open_index(cats, tmp_path / "index")
    try:
        path = index.path
        copy = path.with_name("copy.tmp")  # the same index as another file: a rebuild
        shutil.copyfile(path, copy)
        os.replace(copy, path)
        assert index.verify() is None
        swap_in_other_lists(path)
        problem = index.verify()
        assert problem is not None and "an index of other lists" in problem
        path.write_bytes(b"not an index")
        problem = index.verify()
        assert problem is not None and "not an index's" in problem
        path.unlink()  # pruned: the next open builds it
        assert index.verify() is None
    finally:
        index.close()


def test_the_builders_answer_must_be_about_the_index_asked_for(tmp_path: Path) -> None:
    cats = social(tmp_path)
    expected = Expected.of(cats)
    path = build_index(cats, tmp_path / "index")
    counts = [202, 0, 0]
    good = {"path": str(path), "fingerprint": expected.fingerprint, "counts": counts}
    assert listindex._answered(good, path, expected) == (
        path,
        Expected(expected.fingerprint, expected.categories, expected.files, (202, 0, 0)),
    )
    for bad in (
        good | {"path": str(path.with_name("lists-other.idx"))},
        good | {"fingerprint": "0" * 32},
        {"path": str(path), "fingerprint": expected.fingerprint},
        good | {"counts": ["x"]},
    ):
        with pytest.raises(TransientListError, match="index builder answered"):
            listindex._answered(bad, path, expected)
    # What it built is what is opened: a file of the same lists but other counts is not it.
    with pytest.raises(IndexDamaged, match="entries"):
        ListIndex.open(path, listindex._answered(good | {"counts": [9, 0, 0]}, path, expected)[1])
    with ListIndex.open(path, listindex._answered(good, path, expected)[1]) as index:
        assert index.entry_count == 202


@settings(max_examples=60, deadline=None)
@given(where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_any_changed_byte_is_caught(
    tmp_path_factory: pytest.TempPathFactory, where: float, flip: int
) -> None:
    tmp = tmp_path_factory.mktemp("flip")
    path = build_index(social(tmp), tmp / "index")
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    data[at] ^= flip
    with open(path, "r+b") as fh:
        fh.write(data)
    with pytest.raises(IndexDamaged):
        ListIndex.open(path)


@pytest.mark.parametrize("length", [2**64 - 1, 2**40, 1 << 20])
def test_a_damaged_header_length_is_damage_not_a_huge_read(tmp_path: Path, length: int) -> None:
    path = build_index(social(tmp_path), tmp_path / "index")
    with open(path, "r+b") as fh:
        fh.seek(8)
        fh.write(length.to_bytes(8, "little"))
    with pytest.raises(IndexDamaged):  # was MemoryError: a read of the length given
        ListIndex.open(path)


def test_an_index_damaged_while_mapped_refuses_every_lookup(tmp_path: Path) -> None:
    cats = social(tmp_path)
    index = ListIndex.open(build_index(cats, tmp_path / "index"))
    assert index.match_host("chatter.test") and index.verify() is None
    damage(index.path, "zeroed")
    # The mapping shows the file as it is now: zeroed slots would read as "not listed".
    assert index.match_host("chatter.test") == []
    problem = index.verify()
    assert problem is not None and "checksum" in problem
    index.mark_damaged(problem)
    with pytest.raises(IndexDamaged):
        index.match_host("chatter.test")
    with pytest.raises(IndexDamaged):
        index.match_host("unlisted.example")
    index.close()


def test_failures_that_may_pass_are_told_from_those_that_need_an_edit(tmp_path: Path) -> None:
    try:
        try:
            raise PermissionError(13, "Permission denied")
        except OSError:
            raise ListSourceError("the list file x cannot be read") from None
    except ListSourceError as exc:
        assert error_may_pass(exc)
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise ListSourceError("cannot write") from exc
    except ListSourceError as exc:
        assert error_may_pass(exc)
    policy = copy_policy(tmp_path)
    policy.write_text(policy.read_text().replace("block: [games]", "block: [gamez]"))
    with pytest.raises(PolicyLoadError) as broken:
        load_all(policy, tmp_path / "var" / "index")
    assert not broken.value.may_pass  # a mistake in the policy: only an edit mends it


# -- the runtime: verify, block, rebuild; the status file ----------------------------------


def runtime_for(tmp_path: Path) -> PolicyRuntime:
    runtime = PolicyRuntime(copy_policy(tmp_path), tmp_path / "var")
    runtime.retry_seconds = 0.5
    runtime.start()
    return runtime


def decide_for(runtime: PolicyRuntime, host: str) -> str:
    loaded = runtime.current
    assert loaded is not None
    request = Request(canonical_host(host), "/", "http")
    identity = Identity(None, (), "192.0.2.7")
    return decide(loaded.policy, loaded.index, identity, request, datetime.now(UTC)).action.value


@pytest.mark.parametrize("how", DAMAGE)
def test_damage_under_a_running_runtime_blocks_until_rebuilt(tmp_path: Path, how: str) -> None:
    runtime = runtime_for(tmp_path)
    try:
        assert decide_for(runtime, "chatter.test") == "block"
        assert decide_for(runtime, "plain.test") == "allow"
        told: list[str] = []
        runtime.on_index_damaged = told.append
        with runtime._reload_lock:  # hold the rebuild back to see the state in between
            damage(runtime.current.index.path, how)  # type: ignore[union-attr]
            assert runtime.verify_index() is False
            assert runtime.status()["state"] == "blocking"
            with pytest.raises(IndexDamaged):  # the Filter turns any failure into a block
                decide_for(runtime, "plain.test")
        wait_for(lambda: runtime.status()["state"] == "ok", what="the rebuild")
        assert decide_for(runtime, "chatter.test") == "block"
        assert decide_for(runtime, "plain.test") == "allow"

        def rebuilt() -> bool:  # the status file is written just after the state turns ok
            written = json.loads(runtime.status_path.read_text())["list_index"]
            return bool((written.get("last_damage") or {}).get("rebuilt_at"))

        wait_for(rebuilt, what="the status file to say when it was rebuilt")
        status = json.loads(runtime.status_path.read_text())
        assert status["list_index"]["damage_found"] == 1 and len(told) == 1
        assert verify_file(runtime.current.index.path) is None  # type: ignore[union-attr]
    finally:
        runtime.stop_watching()


def test_a_reload_after_a_swap_rebuilds_and_tells(tmp_path: Path) -> None:
    """The red team's path: another index renamed in, then the policy touched (a reload
    before any verify): the reload finds it, says so and serves a rebuilt index."""
    runtime = runtime_for(tmp_path)
    told: list[str] = []
    runtime.on_index_damaged = told.append
    path = runtime.current.index.path  # type: ignore[union-attr]
    swap_in_other_lists(path)
    assert runtime.reload()
    assert decide_for(runtime, "chatter.test") == "block"
    assert decide_for(runtime, "xxx-example.test") == "block"
    assert decide_for(runtime, "plain.test") == "allow"
    status = json.loads(runtime.status_path.read_text())
    assert status["list_index"]["state"] == "ok" and status["list_index"]["damage_found"] == 1
    assert "an index of other lists" in status["list_index"]["last_damage"]["message"]
    assert status["list_index"]["last_damage"]["rebuilt_at"] is not None
    assert len(told) == 1 and "an index of other lists" in told[0]
    assert verify_file(path, expected_of(runtime.policy_path)) is None


@pytest.mark.parametrize("how", DAMAGE)
def test_a_restart_on_a_damaged_index_rebuilds_it(tmp_path: Path, how: str) -> None:
    first = runtime_for(tmp_path)
    path = first.current.index.path  # type: ignore[union-attr]
    damage(path, how)
    found = check_lists(first.policy_path, first.var_dir)
    assert found[0].level is Level.FAIL and "damaged" in found[0].message
    again = PolicyRuntime(first.policy_path, first.var_dir)
    again.start()
    assert again.current is not None and again.current.index.path == path
    assert decide_for(again, "chatter.test") == "block"
    assert again.index_damage is not None and again.index_damage["rebuilt_at"]
    assert again.index_damage_untold  # nobody listened yet: state_health.py tells at start-up
    assert check_lists(first.policy_path, first.var_dir)[0].level is Level.OK


def test_the_status_file_counts_every_reload(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    for n in (1, 2):
        assert runtime.reload()
        written = json.loads(runtime.status_path.read_text())
        assert written["reloads"] == runtime.reloads == n


def test_a_status_file_that_cannot_be_written_keeps_the_state_in_memory(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    errors: list[str] = []
    runtime.on_error = errors.append
    try:
        run = runtime.status_path.parent
        shutil.rmtree(run)
        run.write_text("not a folder")  # the status file cannot be written, even as root
        policy = runtime.policy_path
        policy.write_text(policy.read_text().replace("block: [games]", "block: [gamez]"))
        assert runtime.reload() is False  # before the fix: an OSError from the error path
        assert errors and "gamez" in errors[0]  # on_error is still told
        status = runtime.status()
        assert status["state"] == "error" and "gamez" in status["last_error"]["message"]
        assert status["status_file_error"] is not None
        run.unlink()
        wait_for(lambda: runtime.status_path.exists(), what="the status file written again")
        assert runtime.status_error is None
        assert json.loads(runtime.status_path.read_text())["last_error"] is not None
    finally:
        runtime.stop_watching()


def test_records_the_disk_refuses_are_counted(tmp_path: Path) -> None:
    record = build(
        {"host": "plain.test", "action": "allow", "reason": "default"}, datetime.now(UTC)
    )
    writer = AccessWriter(Path("/dev/full"), None, lambda: None, flush_seconds=0.05)
    writer.start()
    for _ in range(7):
        writer.submit(record)
    writer.close()
    assert writer.lost["file"] == 7 and writer.lost["queue"] == 0
    assert writer.last_loss and "No space left" in writer.last_loss


# -- a real gateway ------------------------------------------------------------------------


def alerting_policy(tmp: Path) -> Path:
    """The test policy, with a technical channel so alerts have somewhere to be stored."""
    policy = copy_policy(tmp)
    (policy.parent / "hook-secret").write_bytes(b"s" * 32)
    dead = free_port()  # nothing listens: alerts stay in the outbox, which is what we read
    text = policy.read_text().replace(
        "notifications:\n",
        f"notifications:\n  webhook: {{url: 'http://127.0.0.1:{dead}/hook', "
        "secret_file: hook-secret}\n",
    )
    policy.write_text(text)
    return policy


class Live:
    """A gateway with its metrics port: /status and /metrics."""

    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.port = port
        self.url = f"http://127.0.0.1:{port}/status"

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return dict(json.loads(response.read()))

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        )

    def code(self, url: str) -> int:
        return body_and_status(self.gateway.curl(url))[1]

    def alert_kinds(self) -> list[str]:
        store = Store.open(store_url(self.gateway.var))
        try:
            with store.connect() as conn:
                return list(conn.scalars(sa.select(alert_outbox.c.kind)))
        finally:
            store.dispose()


def start_live(policy: Path, var: Path, upstream: Upstream, *extra: str) -> Live:
    port = free_port()
    sets = [f"schoolgate_metrics_port={port}", "schoolgate_reload_retry_seconds=1", *extra]
    gw = start_mitmdump(policy, var, upstream, extra=[a for s in sets for a in ("--set", s)])
    return Live(gw, port)


def started(tmp_path: Path, upstream: Upstream) -> tuple[Path, Path, Live]:
    """(policy, var, gateway) for the alerting policy, checked to block and allow."""
    policy, var = alerting_policy(tmp_path), tmp_path / "var"
    live = start_live(policy, var, upstream)
    try:
        assert live.code("http://chatter.test/") == 403
        assert live.code("http://plain.test/") == 200
    except BaseException:
        live.gateway.stop()
        raise
    return policy, var, live


def cli_status(live: Live, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["status", "--var", str(live.gateway.var), "--status-url", live.url])
    return code, capsys.readouterr().out


# Through a real gateway, one kind of damage each (the issue's own, and the swap): every
# kind is refused in-process above, on the same code path.
@pytest.mark.parametrize("how", ["zeroed"])
def test_gateway_restarted_on_a_damaged_index_rebuilds_it_and_says_so(
    tmp_path: Path, upstream: Upstream, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    policy, var, live = started(tmp_path, upstream)
    try:
        path = Path(live.status()["list_index"]["path"])
    finally:
        live.gateway.stop()
    damage(path, how)
    live = start_live(policy, var, upstream)
    try:
        assert live.code("http://chatter.test/") == 403 and live.code("http://plain.test/") == 200
        status = live.status()
        assert status["state"] == "ok" and status["list_index"]["damage_found"] == 1
        assert status["list_index"]["last_damage"]["rebuilt_at"]
        assert verify_file(path) is None
        assert live.metric("schoolgate_list_index_damage_found_total") == 1
        assert live.metric("schoolgate_list_index_damaged") == 0
        assert verify_file(path, expected_of(policy)) is None
        assert "list_index_damaged" in live.alert_kinds()
        code, out = cli_status(live, capsys)
        assert code == 0 and "a damaged list index was found" in out
        assert check_gateway(var, live.url).level is Level.WARN
        assert "damaged" in live.gateway.log_text()
    finally:
        live.gateway.stop()


@pytest.mark.parametrize("how", ["flipped", "swapped"])
def test_gateway_blocks_while_its_index_is_damaged_then_rebuilds_it(
    tmp_path: Path, upstream: Upstream, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    policy, var, live = started(tmp_path, upstream)
    games = policy.parent / "lists" / "games.hosts"
    aside = tmp_path / "games.hosts.aside"
    try:
        path = Path(live.status()["list_index"]["path"])
        # Hold the rebuild back: with a list missing, a reload cannot succeed.
        games.rename(aside)
        wait_for(lambda: live.status()["last_error"], what="the failed reload")
        damage(path, how)  # in place, under the running gateway's mapping
        wait_for(lambda: live.status()["state"] == "blocking", what="the damage to be seen")
        for url in ("http://plain.test/", "http://chatter.test/", "https://plain.test/"):
            assert live.code(url) in (403, 0), url  # blocked (0: the CONNECT got the 403)
        assert live.metric("schoolgate_list_index_damaged") == 1
        code, out = cli_status(live, capsys)
        assert code == 2 and "every request is blocked" in out
        doctor = check_gateway(var, live.url)
        assert doctor.level is Level.FAIL and "damaged" in doctor.message
        wait_for(lambda: "list_index_damaged" in live.alert_kinds(), what="the alert")

        aside.rename(games)  # the lists are back: the reload rebuilds the index
        wait_for(lambda: live.status()["state"] == "ok", what="the rebuild")
        assert live.code("http://plain.test/") == 200 and live.code("http://chatter.test/") == 403
        assert live.metric("schoolgate_list_index_damaged") == 0
        assert verify_file(path, expected_of(policy)) is None
        assert check_gateway(var, live.url).level is Level.WARN  # found and rebuilt: look at it
    finally:
        if aside.exists():
            aside.rename(games)
        live.gateway.stop()


def test_gateway_never_serves_an_index_of_other_lists_renamed_over_its_own(
    tmp_path: Path, upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    """The red team's swap through a real mitmdump: another valid index renamed over the
    one in force, then the policy touched to force a reload. Blocked sites stay blocked
    the whole time; the swap is found, told and rebuilt."""
    policy, var, live = started(tmp_path, upstream)
    try:
        path = Path(live.status()["list_index"]["path"])
        swap_in_other_lists(path)
        os.utime(policy)  # the reload that served it before the fix
        blocked = ("http://chatter.test/", "http://xxx-example.test/", "http://friends.test/")
        deadline = time.monotonic() + 30
        while True:  # from the swap until it is rebuilt: never a blocked site's page
            for url in blocked:
                assert live.code(url) == 403, url
            status = live.status()
            done = status["list_index"]["damage_found"] == 1 and status["state"] == "ok"
            if done and status["list_index"]["last_damage"]["rebuilt_at"]:
                break
            assert time.monotonic() < deadline, status
        assert "an index of other lists" in status["list_index"]["last_damage"]["message"]
        assert verify_file(path, expected_of(policy)) is None
        assert live.code("http://plain.test/") == 200
        assert live.metric("schoolgate_list_index_damage_found_total") == 1
        wait_for(lambda: "list_index_damaged" in live.alert_kinds(), what="the alert")
        code, out = cli_status(live, capsys)
        assert code == 0 and "a damaged list index was found" in out and "other lists" in out
        assert check_gateway(var, live.url).level is Level.WARN
    finally:
        live.gateway.stop()
    swap_in_other_lists(path)  # and stopped: doctor fails it, a start rebuilds it
    found = check_lists(policy, var)
    assert found[0].level is Level.FAIL and "an index of other lists" in found[0].message
    live = start_live(policy, var, upstream)
    try:
        assert live.code("http://chatter.test/") == 403 and live.code("http://plain.test/") == 200
        assert live.status()["list_index"]["damage_found"] == 1
        assert check_lists(policy, var)[0].level is Level.OK
    finally:
        live.gateway.stop()


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def tiny_var(tmp_path: Path) -> Iterator[Path]:
    """var/ on a 16 MB tmpfs; the gateway's own log stays outside it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    var = tmp_path / "var"
    var.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(var)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    (var / "gateway.log").symlink_to(tmp_path / "gateway.log")
    try:
        yield var
    finally:
        subprocess.run(["umount", "-l", str(var)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(bytes(size))
    return filler


def test_full_disk_a_list_edit_is_visible_retried_and_applied(
    tmp_path: Path, tiny_var: Path, upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = alerting_policy(tmp_path)
    live = start_live(policy, tiny_var, upstream, "schoolgate_access_log_flush_ms=100")
    try:
        assert live.code("http://newsite.test/") == 200
        filler = fill(tiny_var)
        with (policy.parent / "lists" / "social.txt").open("a") as fh:
            fh.write("newsite.test\n")
        error = wait_for(lambda: live.status()["last_error"], what="the failed reload")
        assert "No space left on device" in error["message"] and error["retrying"]
        # the runtime notes the error, then tries the status file: /status may come between
        status = wait_for(
            lambda: (s := live.status())["status_file_error"] is not None and s,
            what="the status file's failure",
        )
        assert status["state"] == "error"
        assert live.code("http://newsite.test/") == 200  # the edit is not in force ...
        assert live.metric("schoolgate_policy_last_reload_failed") == 1  # ... and it shows
        assert live.metric("schoolgate_policy_reloads_total", outcome="failure") >= 1
        assert live.metric("schoolgate_status_file_failing") == 1
        wait_for(lambda: live.status()["last_error"]["attempts"] >= 2, what="a retry")
        code, out = cli_status(live, capsys)
        assert code == 2 and "No space left on device" in out and "status file" in out
        assert check_gateway(tiny_var, live.url).level is Level.FAIL
        # The alert went to the outbox, or, with the store's disk full too, was counted.
        unstored = live.metric("schoolgate_alerts_not_stored_total", kind="policy_reload_failed")
        assert unstored >= 1 or "policy_reload_failed" in live.alert_kinds()
        # Access-log records: the file refuses them; they are counted, not silently lost.
        for i in range(40):
            live.code(f"http://plain.test/full-{i}")
        wait_for(lambda: live.status()["access_log"]["lost"]["file"] > 0, what="lost records")
        assert live.metric("schoolgate_access_log_dropped_total", sink="file") > 0

        filler.unlink()  # space again: the retry applies the edit by itself
        wait_for(lambda: live.status()["state"] == "ok", what="the retried reload")
        assert live.code("http://newsite.test/") == 403
        written = json.loads((tiny_var / "run" / "status.json").read_text())
        assert written["last_error"] is None and written["reloads"] == 1
        assert live.metric("schoolgate_status_file_failing") == 0
        wait_for(lambda: "access_log_lost" in live.alert_kinds(), what="the lost-records alert")
        live.code("http://plain.test/after")
        log = tiny_var / "log" / "access.jsonl"
        wait_for(lambda: "/after" in log.read_text(), what="the access log written again")
        for line in log.read_text().splitlines():
            json.loads(line)  # every line whole: a line cut by the full disk was finished
    finally:
        live.gateway.stop()
