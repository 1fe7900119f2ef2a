"""`schoolgate lists update`: archives from a local HTTP server, checked, swapped in, or refused.

A real HTTP server on loopback serves tar archives the tests build; the policy is
the test policy with its UT1 folder moved to lists/ut1/adult, as a school's is.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy_addons.cli import main as cli
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.ops.doctor.findings import Level
from proxy_addons.ops.doctor.lists import check_lists
from proxy_addons.ops.list_update.config import UpdateError, load_config
from proxy_addons.ops.list_update.update import Swap, swap_in, update_lists
from tests.conftest import copy_policy

OLD_DOMAINS = "adult.test\nxxx-example.test\n"


@dataclass
class Site:
    folder: Path
    base: str

    def add(self, name: str, members: dict[str, bytes | str], *, top: str = "blacklists") -> str:
        """A .tar.gz of members (a str value is a symbolic link's target); returns its URL."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path, data in members.items():
                info = tarfile.TarInfo(f"{top}/{path}" if top else path)
                if isinstance(data, str):
                    info.type, info.linkname = tarfile.SYMTYPE, data
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        (self.folder / name).write_bytes(buf.getvalue())
        return f"{self.base}/{name}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    folder = tmp_path / "site"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Site(folder, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = copy_policy(tmp_path)
    folder = path.parent
    (folder / "lists" / "ut1").mkdir()
    (folder / "lists" / "ut1-adult").rename(folder / "lists" / "ut1" / "adult")
    path.write_text(path.read_text().replace("lists/ut1-adult", "lists/ut1/adult"))
    return path


def _config(policy: Path, url: str, extra: str = "", min_fraction: float = 0.5) -> Path:
    path = policy.parent / "list-updates.yaml"
    path.write_text(
        f"archives:\n  - url: {url}\n    into: lists/ut1\n    top: blacklists\n{extra}"
        f"min_fraction: {min_fraction}\n"
    )
    return path


GOOD: dict[str, bytes | str] = {
    "adult/domains": b"adult.test\nxxx-example.test\nnew-adult.test\n",
    "adult/usage": b"black\n",
    "gambling/domains": b"bets.test\n",
    "porn": "adult",  # UT1 links some category names to others
}


def _adult(policy: Path) -> Path:
    return policy.parent / "lists" / "ut1" / "adult"


def test_a_good_archive_is_swapped_in_and_the_index_rebuilt(
    policy: Path, site: Site, tmp_path: Path
) -> None:
    url = site.add("blacklists.tar.gz", GOOD)
    var = tmp_path / "var"
    result = update_lists(policy, var, load_config(_config(policy, url)))

    assert result.ok, result.message
    adult = _adult(policy)
    assert (adult / "domains").read_text().endswith("new-adult.test\n")
    # The archive has no urls file for adult any more: the old one goes (kept in .previous).
    assert not (adult / "urls").exists()
    assert (adult.parent.parent / ".ut1.previous" / "adult" / "urls").exists()
    assert os.readlink(adult.parent / "porn") == "adult"
    assert (adult.parent / "gambling" / "domains").read_text() == "bets.test\n"
    [info] = result.archives
    assert info["lists"] == [{"list": "adult", "before": 3, "after": 3}]
    assert (
        info["sha256"]
        == hashlib.sha256((site.folder / "blacklists.tar.gz").read_bytes()).hexdigest()
    )

    loaded = load_all(policy, var / "index")  # the index the update built
    try:
        assert [m.category for m in loaded.index.match_host("new-adult.test")] == ["adult"]
    finally:
        loaded.index.close()
    status = json.loads((var / "run" / "lists-update.json").read_text())
    assert status["ok"] is True
    assert [c.level for c in check_lists(policy, var)] == [Level.OK, Level.OK]
    assert not list(adult.parent.parent.glob(".ut1.update-*")), "the work folder is removed"


@pytest.mark.parametrize(
    ("members", "extra", "expected"),
    [
        (GOOD, "    sha256: " + "ab" * 32 + "\n", "is not the configured"),
        ({"gambling/domains": b"bets.test\n"}, "", "the new adult can't be used"),
        ({"adult/domains": b"adult.test\n"}, "", "has 1 entries where the one in use has 3"),
        ({"adult/domains": b"a.test\n", "../../escape": b"x"}, "", "does not unpack"),
        ({"adult/domains": b"a.test\n", "x": "/etc/passwd"}, "", "does not unpack"),
    ],
    ids=["wrong-sha256", "category-missing", "shrank", "path-escape", "link-escape"],
)
def test_a_bad_archive_is_refused_and_the_lists_in_use_kept(
    policy: Path,
    site: Site,
    tmp_path: Path,
    members: dict[str, bytes | str],
    extra: str,
    expected: str,
) -> None:
    url = site.add("blacklists.tar.gz", members)
    adult = _adult(policy)
    before = {p.name: p.read_bytes() for p in adult.iterdir()}
    var = tmp_path / "var"

    result = update_lists(policy, var, load_config(_config(policy, url, extra)))

    assert not result.ok
    assert expected in result.message
    assert {p.name: p.read_bytes() for p in adult.iterdir()} == before
    assert not (policy.parent / "escape").exists() and not (tmp_path / "escape").exists()
    assert not (adult.parent / "gambling").exists()
    checks = check_lists(policy, var)
    assert checks[-1].level is Level.WARN and "failed" in checks[-1].message


def test_force_takes_a_list_that_shrank(policy: Path, site: Site, tmp_path: Path) -> None:
    url = site.add("blacklists.tar.gz", {"adult/domains": b"adult.test\n"})
    result = update_lists(policy, tmp_path / "var", load_config(_config(policy, url)), force=True)
    assert result.ok, result.message
    assert (_adult(policy) / "domains").read_text() == "adult.test\n"


def test_a_download_that_fails_keeps_the_lists(policy: Path, site: Site, tmp_path: Path) -> None:
    result = update_lists(
        policy, tmp_path / "var", load_config(_config(policy, f"{site.base}/missing.tar.gz"))
    )
    assert not result.ok and "download failed" in result.message and "404" in result.message
    assert (_adult(policy) / "domains").read_text() == OLD_DOMAINS


def test_a_checksum_file_is_checked(policy: Path, site: Site, tmp_path: Path) -> None:
    url = site.add("blacklists.tar.gz", GOOD)
    md5 = hashlib.md5((site.folder / "blacklists.tar.gz").read_bytes()).hexdigest()
    (site.folder / "MD5SUM.LST").write_text(f"{'f' * 32}  other.tar.gz\n{md5}  blacklists.tar.gz\n")
    sums = f"    checksums: {site.base}/MD5SUM.LST\n"
    assert update_lists(policy, tmp_path / "v1", load_config(_config(policy, url, sums))).ok

    (site.folder / "MD5SUM.LST").write_text(f"{'0' * 32}  blacklists.tar.gz\n")
    result = update_lists(policy, tmp_path / "v2", load_config(_config(policy, url, sums)))
    assert not result.ok and "does not match" in result.message


def test_undo_puts_back_replaced_and_removes_added_files(tmp_path: Path) -> None:
    into, staged = tmp_path / "ut1", tmp_path / "staged"
    (into / "adult").mkdir(parents=True)
    (into / "adult" / "domains").write_text("old\n")
    (into / "adult" / "urls").write_text("old.test/x\n")
    (staged / "adult").mkdir(parents=True)
    (staged / "adult" / "domains").write_text("new\n")
    (staged / "adult" / "expressions").write_text("x\n")
    swap: Swap = swap_in(staged, into, tmp_path / "backup")
    assert (into / "adult" / "domains").read_text() == "new\n"
    assert not (into / "adult" / "urls").exists()
    swap.undo()
    assert (into / "adult" / "domains").read_text() == "old\n"
    assert (into / "adult" / "urls").read_text() == "old.test/x\n"
    assert not (into / "adult" / "expressions").exists()


def test_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "list-updates.yaml"
    path.write_text("archives:\n  - into: lists/ut1\n")
    with pytest.raises(UpdateError, match=r"list-updates.yaml: archives\[1\]: needs 'url'"):
        load_config(path)
    path.write_text("archives:\n  - {url: 'ftp://x/y.tgz', into: a}\n")
    with pytest.raises(UpdateError, match="http"):
        load_config(path)
    path.write_text("archives:\n  - {url: 'http://x/y.tgz', into: a, sha256: 0123}\n")
    with pytest.raises(UpdateError, match="quoted string"):
        load_config(path)
    path.write_text("archives: []\nmin_fraction: 2\n")
    with pytest.raises(UpdateError, match="min_fraction"):
        load_config(path)


def test_doctor_warns_when_the_last_update_is_old(policy: Path, tmp_path: Path) -> None:
    var = tmp_path / "var"
    (var / "run").mkdir(parents=True)
    at = datetime.now(UTC) - timedelta(days=20)
    (var / "run" / "lists-update.json").write_text(json.dumps({"at": at.isoformat(), "ok": True}))
    last = check_lists(policy, var)[-1]
    assert last.level is Level.WARN and "last updated" in last.message


def test_cli(policy: Path, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    var = str(tmp_path / "var")
    assert cli.main(["lists", "update", "--policy", str(policy), "--var", var]) == 0
    assert "nothing to do" in capsys.readouterr().out

    _config(policy, site.add("blacklists.tar.gz", GOOD))
    assert cli.main(["lists", "update", "--policy", str(policy), "--var", var]) == 0
    out = capsys.readouterr().out
    assert "adult" in out and "3 -> 3 entries" in out and "1 lists updated" in out

    _config(policy, f"{site.base}/gone.tar.gz")
    assert cli.main(["lists", "update", "--policy", str(policy), "--var", var]) == 1
    assert "FAILED, the lists in use are kept" in capsys.readouterr().err
    shutil.rmtree(var)
