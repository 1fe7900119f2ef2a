"""Hashed illegal-tier entries: the hash of a URL's canonical key and of each of its prefixes
(path prefixes and the host) is matched, every spelling of the URL is covered, and a policy
names feeds only in ways that can work (https, known formats, both halves of a client cert)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.core.decide import Reason
from proxy_addons.core.illegal_hashes import covering_keys, entry_hash, hashed_hit, key_hash
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Action
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.core.url_keys import illegal_key
from tests.conftest import copy_policy
from tests.core.test_decision import PUPIL, TEACHER, ask

LISTED_URL = "http://hashed.test/bad/page.html"
LISTED_FOLDER = "https://hashed.test/folder/"
LISTED_SITE = "whole-site.test"


def test_the_canonical_form_is_documented_as_written() -> None:
    # docs/illegal-content.md gives this example; a provider hashes exactly this.
    assert illegal_key("example.com/a/b.html") == "example.com/a/b.html"
    assert entry_hash("HTTP://Example.COM/A/./b.html") == key_hash("example.com/a/b.html")


def test_covering_keys_are_the_url_its_prefixes_and_the_host() -> None:
    assert list(covering_keys("a.test/x/y/z.html?q=1")) == [
        "a.test/x/y/z.html?q=1",
        "a.test/x/y/z.html",
        "a.test/x/y",
        "a.test/x",
        "a.test",
    ]


_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8)


@given(
    path=st.lists(_segment.filter(lambda s: s not in (".", "..")), min_size=1, max_size=5),
    extra=st.lists(_segment.filter(lambda s: s not in (".", "..")), max_size=3),
)
def test_a_hashed_folder_covers_everything_below_it_and_nothing_beside(
    path: list[str], extra: list[str]
) -> None:
    listed = "https://h.test/" + "/".join(path)
    hashes = {entry_hash(listed)}
    below = illegal_key("h.test/" + "/".join(path + extra))
    assert hashed_hit(hashes, below) is not None
    beside = illegal_key("h.test/" + "/".join([*path[:-1], path[-1] + "x", *extra]))
    assert hashed_hit(hashes, beside) is None


@given(
    st.sampled_from(
        [
            "/BAD/page.html",
            "/bad//page.html",
            "/bad/./page.html",
            "/%62ad/page.html",
            "/bad/x/../page.html",
            "/bad/page.html;jsessionid=1",
            "/bad/page.html?x=1",
        ]
    )
)
def test_every_spelling_of_a_hashed_url_is_covered(path: str) -> None:
    hashes = {entry_hash(LISTED_URL)}
    assert hashed_hit(hashes, illegal_key("hashed.test" + path)) is not None


# ------------------------------------------------------------------ in the decision core


def _with_feed(tmp_path: Path, lines: list[str], fmt: str = "hashed") -> LoadedPolicy:
    path = copy_policy(tmp_path)
    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "provider.txt").write_text("# a provider's hashed list\n" + "\n".join(lines) + "\n")
    text = path.read_text()
    old = "illegal:\n  - exact: lists/illegal/exact.txt\n  - prefix: lists/illegal/prefix.txt\n"
    assert text.count(old) == 1
    new = (
        "illegal:\n  lists:\n    - exact: lists/illegal/exact.txt\n"
        "    - prefix: lists/illegal/prefix.txt\n"
        f"  feeds_folder: {folder}\n"
        f"  feeds:\n    - {{name: provider, url: 'https://feed.test/list', format: {fmt}}}\n"
    )
    path.write_text(text.replace(old, new))
    return load_all(path, tmp_path / "index")


@pytest.fixture
def hashed(tmp_path: Path) -> LoadedPolicy:
    hashes = [entry_hash(u) for u in (LISTED_URL, LISTED_FOLDER, LISTED_SITE)]
    return _with_feed(tmp_path, [h.upper() if i == 1 else h for i, h in enumerate(hashes)])


@pytest.mark.parametrize(
    "url",
    [
        LISTED_URL,
        "https://HASHED.test/bad/page.html?size=2",
        "https://hashed.test/folder",
        "https://hashed.test/folder/deeper/img.jpg",
        "https://whole-site.test/",
        "https://whole-site.test/anything/at/all",
    ],
)
def test_a_hashed_entry_blocks_everyone_by_its_hash_only(hashed: LoadedPolicy, url: str) -> None:
    for who in (PUPIL, TEACHER):
        d = ask(hashed, url, who)
        assert (d.action, d.reason) == (Action.BLOCK, Reason.ILLEGAL)
        assert d.entry is not None and d.entry.startswith("sha256:")
        assert d.list_source is not None and d.list_source.endswith("provider.txt")


def test_a_hashed_site_is_refused_on_its_name_alone(hashed: LoadedPolicy) -> None:
    d = ask(hashed, "https://whole-site.test/", PUPIL, host_only=True)
    assert (d.action, d.reason) == (Action.BLOCK, Reason.ILLEGAL)
    assert ask(hashed, "https://hashed.test/", PUPIL, host_only=True).reason is not Reason.ILLEGAL


@pytest.mark.parametrize(
    "url",
    ["https://hashed.test/", "https://hashed.test/bad/other.html", "https://hashed.test/folderx"],
)
def test_unlisted_urls_beside_hashed_entries_pass(hashed: LoadedPolicy, url: str) -> None:
    assert ask(hashed, url, PUPIL).reason is not Reason.ILLEGAL


def test_the_tier_remembers_what_it_loaded(hashed: LoadedPolicy) -> None:
    tier = hashed.policy.illegal
    assert len(tier.hashed) == 3 and [f.name for f in tier.feeds] == ["provider"]
    assert len(tier.feed_digests["provider"]) == 64
    assert tier.exact  # the files' entries are still there


def test_a_plain_feed_adds_exact_entries(tmp_path: Path) -> None:
    loaded = _with_feed(tmp_path, ["https://plain.test/a.html"], fmt="plain")
    assert ask(loaded, "https://plain.test/a.html", PUPIL).reason is Reason.ILLEGAL
    assert ask(loaded, "https://plain.test/a.html/b", PUPIL).reason is not Reason.ILLEGAL


def test_a_feed_never_fetched_is_not_a_policy_error(tmp_path: Path) -> None:
    loaded = _with_feed(tmp_path, [])
    (tmp_path / "feeds" / "provider.txt").unlink()
    policy = load_policy(loaded.policy.path)
    assert policy.illegal.feed_digests == {} and policy.illegal.feeds


@pytest.mark.parametrize(
    ("feed", "says"),
    [
        ("{name: p, url: 'http://feed.test/list'}", "https:// only"),
        ("{name: p, url: 'https://feed.test/list', format: md5}", "format is plain or hashed"),
        ("{name: 'a/b', url: 'https://feed.test/list'}", "names files"),
        ("{name: p, url: 'https://feed.test/list', max_age_hours: 0}", "max_age_hours"),
        ("{name: p, url: 'https://feed.test/list', client_cert: school.yaml}", "both client_cert"),
        ("{name: p, url: 'https://feed.test/list', secret_file: nothing.txt}", "does not exist"),
    ],
)
def test_a_feed_that_cannot_work_is_refused(tmp_path: Path, feed: str, says: str) -> None:
    path = copy_policy(tmp_path)
    text = path.read_text().replace(
        "illegal:\n  - exact: lists/illegal/exact.txt\n  - prefix: lists/illegal/prefix.txt\n",
        f"illegal:\n  lists:\n    - exact: lists/illegal/exact.txt\n  feeds:\n    - {feed}\n",
    )
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert says in str(err.value)


def test_an_allow_rule_reaching_a_hashed_entry_is_refused(tmp_path: Path) -> None:
    loaded = _with_feed(tmp_path, [entry_hash(LISTED_SITE)])
    path = loaded.policy.path
    text = path.read_text()
    old = "      - allow: {domains: [allowed-ip-site.test]}\n"
    assert text.count(old) == 1
    path.write_text(text.replace(old, f"      - allow: {{domains: [{LISTED_SITE}]}}\n"))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert "hashed entry of the illegal tier" in str(err.value)
