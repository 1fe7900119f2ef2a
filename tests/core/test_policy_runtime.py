"""Live reloads of the policy and its lists, without the proxy around them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proxy_addons.core.policy.runtime import LoadedPolicy, PolicyRuntime
from tests.conftest import copy_policy


def _wait(check, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in force in time"
        time.sleep(0.05)


def _blocks(runtime: PolicyRuntime, host: str) -> bool:
    loaded = runtime.current
    return loaded is not None and bool(loaded.index.match_host(host))


def test_an_edit_made_during_a_reload_is_not_lost(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    social = policy.parent / "lists" / "social.txt"
    edits = iter(["second.test"])

    def edit_again(_: LoadedPolicy) -> None:
        for host in edits:  # once: while the first reload is finishing
            with social.open("a") as fh:
                fh.write(f"{host}\n")

    runtime = PolicyRuntime(policy, tmp_path / "var", on_reload=edit_again)
    runtime.start()
    runtime.watch()
    try:
        with social.open("a") as fh:
            fh.write("first.test\n")
        _wait(lambda: _blocks(runtime, "first.test"))
        _wait(lambda: _blocks(runtime, "second.test"))
        assert runtime.reloads >= 2 and runtime.last_error is None
    finally:
        runtime.stop_watching()


def test_a_broken_edit_keeps_the_last_good_policy_and_says_where(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    runtime = PolicyRuntime(policy, tmp_path / "var")
    runtime.start()
    good = runtime.current
    policy.write_text(policy.read_text().replace("block: [games]", "block: [gamez]"))
    assert runtime.reload() is False
    assert runtime.current is good
    assert runtime.last_error is not None
    assert "category 'gamez' is not defined" in runtime.last_error["message"]
    assert f"{policy}, line" in runtime.last_error["message"]
    assert runtime.status()["state"] == "error"


def test_rebuild_after_editing_one_list_reuses_the_others_and_sees_the_edit(
    tmp_path: Path,
) -> None:
    policy = copy_policy(tmp_path)
    runtime = PolicyRuntime(policy, tmp_path / "var")
    runtime.start()
    cache = tmp_path / "var" / "index" / "keys"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert before  # one cached key file per list file
    social = policy.parent / "lists" / "social.txt"
    social.write_text("friends.test\nnewcomer.test\n")  # chatter.test removed
    assert runtime.reload()
    assert _blocks(runtime, "newcomer.test") and _blocks(runtime, "friends.test")
    assert not _blocks(runtime, "chatter.test")
    assert _blocks(runtime, "adult.test")  # from a list whose keys came from the cache
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    unchanged = set(before) & set(after)
    assert unchanged and all(before[n] == after[n] for n in unchanged)
    assert len(set(after) - set(before)) == 1  # only the edited file was read again


def test_a_broken_phrase_library_is_a_broken_policy(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    library = policy.parent / "phrases.yaml"
    library.write_text("categories:\n  suicide:\n    5: [end my life]\n")
    policy.write_text(
        policy.read_text().replace(
            "profiles:", "monitoring:\n  phrase_libraries: [phrases.yaml]\nprofiles:", 1
        )
    )
    runtime = PolicyRuntime(policy, tmp_path / "var")
    runtime.start()
    library.write_text("categories:\n  suicide:\n    9: [end my life]\n")
    assert runtime.reload() is False
    assert runtime.last_error is not None
    assert f"{library}, line 3" in runtime.last_error["message"]


@pytest.mark.parametrize("kind", ["social.txt", "games.hosts", "ut1-adult/urls"])
def test_a_list_overwritten_with_garbage_keeps_the_last_good_lists(
    tmp_path: Path, kind: str
) -> None:
    """A failed download or a damaged disk leaves noise in a list: its category must not
    open. The reload fails, naming the file, and the last good lists stay in force."""
    policy = copy_policy(tmp_path)
    runtime = PolicyRuntime(policy, tmp_path / "var")
    runtime.start()
    good = runtime.current
    noise = bytes(range(256)) * 12  # what `head -c 3000 /dev/urandom` leaves, reproducibly
    (policy.parent / "lists" / kind).write_bytes(noise.replace(b"\n", b"\n\x07 \x01"))
    assert runtime.reload() is False
    assert runtime.current is good
    assert _blocks(runtime, "chatter.test")
    assert runtime.last_error is not None
    assert "could not be understood" in runtime.last_error["message"]
    assert str(policy.parent / "lists" / kind) in runtime.last_error["message"]


@pytest.mark.parametrize("kind", ["social.txt", "ut1-adult/domains"])
def test_a_list_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """`ln -sf /dev/zero list` would feed the builder for ever: refused, naming the file."""
    policy = copy_policy(tmp_path)
    runtime = PolicyRuntime(policy, tmp_path / "var")
    runtime.start()
    good = runtime.current
    target = policy.parent / "lists" / kind
    target.unlink()
    target.symlink_to("/dev/zero")
    assert runtime.reload() is False
    assert runtime.current is good and _blocks(runtime, "chatter.test")
    assert runtime.last_error is not None
    assert "not a regular file" in runtime.last_error["message"]
