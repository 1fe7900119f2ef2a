"""List readers and the memory-mapped list index, on real files in tmp_path."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_addons.core.hosts import canonical_host, canonical_url_entry, host_suffixes
from proxy_addons.core.lists import build as listbuild
from proxy_addons.core.lists import index as listindex
from proxy_addons.core.lists import layout as listlayout
from proxy_addons.core.lists import sources as listsources
from proxy_addons.core.lists.build import build_index
from proxy_addons.core.lists.index import ListIndex
from proxy_addons.core.lists.layout import CategorySources, Match
from proxy_addons.core.lists.sources import (
    _CLEAN_LINE,
    ListSource,
    ListSourceError,
    SkipReport,
    fingerprint,
    iter_domains,
    iter_urls,
    parse_domain_chunk,
    read_expressions,
)
from proxy_addons.core.url_keys import match_key

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "data" / "lists" / "ut1"


def write(path: Path, text: str, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes(data.encode())
    return path


@pytest.fixture
def ut1(tmp_path: Path) -> Path:
    """A copy of the UT1 fixture folders (so tests may touch them)."""
    dest = tmp_path / "ut1"
    shutil.copytree(FIXTURES, dest)
    return dest


def cat(name: str, *sources: tuple[str, Path]) -> CategorySources:
    return CategorySources(name, tuple(ListSource(k, p) for k, p in sources))  # type: ignore[arg-type]


def open_index(tmp_path: Path, cats: list[CategorySources]) -> ListIndex:
    return ListIndex.open(build_index(cats, tmp_path / "index"))


def hosts_of(matches: list[Match]) -> set[tuple[str, str]]:
    return {(m.category, m.entry) for m in matches}


# ----------------------------------------------------------------------- readers


def test_domain_file_crlf_comments_garbage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path / "domains.txt",
        "# a comment\n"
        "\n"
        "example.com\n"
        "  Spaced.Example.ORG.  \n"
        "inline.example # with a comment\n"
        "*.wild.example\n"
        ".leading-dot.example\n"
        "bücher.example\n"
        "xn--bcher-kva.example\n"
        "192.0.2.7\n"
        "0x7f.1\n"
        "two words.example\n"
        "http://a-url.example/path\n"
        "bad*wild.example\n"
        "exa mple.com\n",
        crlf=True,
    )
    with caplog.at_level(logging.WARNING):
        got = list(iter_domains(ListSource("domains", path)))
    assert sorted(got) == sorted(
        [
            "example.com",
            "spaced.example.org",
            "inline.example",
            "wild.example",
            "leading-dot.example",
            "xn--bcher-kva.example",
            "xn--bcher-kva.example",
            "192.0.2.7",
            "127.0.0.1",
        ]
    )
    (record,) = [r for r in caplog.records if "skipped" in r.getMessage()]
    msg = record.getMessage()
    assert "skipped 4 entries" in msg
    assert f"{path}:12" in msg and f"{path}:13" in msg


def test_hosts_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        tmp_path / "hosts",
        "# hosts file\n"
        "127.0.0.1 localhost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        "0.0.0.0 0.0.0.0\n"
        "0.0.0.0 ads.example.com tracker.Example.net # two names\n"
        "127.0.0.1\tspy.example\n"
        "plain.example\n"
        "0.0.0.0 bad..*name\n",
        crlf=True,
    )
    with caplog.at_level(logging.WARNING):
        got = list(iter_domains(ListSource("hosts", path)))
    assert got == ["ads.example.com", "tracker.example.net", "spy.example"]
    assert f"{path}:7" in caplog.text and f"{path}:8" in caplog.text


def test_url_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        tmp_path / "urls.txt",
        "# urls\n"
        "A.Example.com/Path\n"
        "  b.example.com/dir/  \n"
        "c.example.com/p?q=1 # comment\n"
        "http://d.example.com/x\n"
        "e.example.com\n"
        "has spaces.example/x\n"
        "bad host^.example/x\n",
        crlf=True,
    )
    with caplog.at_level(logging.WARNING):
        got = list(iter_urls(ListSource("urls", path)))
    # Entries leave as their match keys (a folder's trailing slash dropped).
    assert got == [
        "a.example.com/Path",
        "b.example.com/dir",
        "c.example.com/p?q=1",
        "d.example.com/x",
        "e.example.com",
    ]
    assert "skipped 2 entries" in caplog.text


def test_expressions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "cat"
    write(
        folder / "expressions", "# expr\n(^|[-/_.])casino([-/_.]|$)\n(unclosed\npoker[[:digit:]]+\n"
    )
    with caplog.at_level(logging.WARNING):
        got = read_expressions(ListSource("ut1", folder))
    assert got == ["(^|[-/_.])casino([-/_.]|$)", "poker[[:digit:]]+"]
    assert "expressions:3" in caplog.text
    assert read_expressions(ListSource("domains", write(tmp_path / "d", "a.com\n"))) == []


def test_ut1_fixture_reads(ut1: Path) -> None:
    gambling = ListSource("ut1", ut1 / "gambling")
    domains = list(iter_domains(gambling))
    assert len(domains) == 121 and "pokerstars.com" in domains
    assert "astrolabio.net/casino" in list(iter_urls(gambling))
    adult = ListSource("ut1", ut1 / "adult")  # urls only
    assert list(iter_domains(adult)) == []
    assert "1512h.itch.io/life-in-teyvat" in list(iter_urls(adult))


def slow_path(lines: list[str]) -> list[str]:
    """What canonical_host alone makes of domain-list lines (the reference)."""
    out = []
    for line in lines:
        try:
            name = listsources._domain(line)
        except listsources._Skip:
            continue
        if name is not None:
            out.append(name)
    return out


def test_fast_path_gives_what_canonical_host_gives() -> None:
    for path in FIXTURES.glob("*/domains"):
        data = path.read_bytes()
        batch = parse_domain_chunk(data, 0, SkipReport(path))
        reference = slow_path(data.decode().splitlines())
        assert sorted(n.decode() for n in batch.names) == sorted(reference)
        assert len(batch.names) == data.count(b"\n")


TOKENS = ["a", "b", "n", "x", "0", "9", "-", "_", ".", ":", "A", " ", "#", "*", "xn--", "0x"]
CHUNK_LINE = st.lists(st.sampled_from(TOKENS), max_size=8).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(CHUNK_LINE, min_size=1, max_size=6))
def test_fast_path_is_transparent(lines: list[str]) -> None:
    """Lines taken as they stand are exactly those canonical_host leaves unchanged."""
    chunk = "".join(line + "\n" for line in lines).encode()
    batch = parse_domain_chunk(chunk, 0, SkipReport(Path("x")))
    names = [n.decode() for n in batch.names]
    assert sorted(names) == sorted(slow_path(lines))
    assert batch.single_label == any("." not in n and ":" not in n for n in names)
    for line in lines:
        if _CLEAN_LINE.fullmatch(line.encode()):
            assert canonical_host.__wrapped__(line).name == line


URL_TOKENS = ["a", "B", "0", "9", ".", "..", "/", "-", "_", "%2e", "%41", "?", "#", ":", "@"]
URL_TOKENS += ["\\", " ", "'", "^", "|", "~", "xn--", "0x", "é", "[", "]", "{", "`", ";"]
URL_WORD = st.lists(st.sampled_from(URL_TOKENS), min_size=1, max_size=10).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(URL_WORD, st.tuples(URL_WORD, URL_WORD).map("/".join)))
def test_url_fast_path_is_transparent(word: str) -> None:
    try:
        reference: str | None = match_key(canonical_url_entry(word))
    except ValueError:
        reference = None
    if listsources._CLEAN_URL.fullmatch(word):
        assert reference == word
    assert reference is None or listsources.url_entry(word) == reference


@pytest.mark.parametrize(
    ("kind", "rel", "words"),
    [
        ("ut1", "missing-folder", "does not exist"),
        ("domains", "missing.txt", "does not exist"),
        ("hosts", "missing-hosts", "does not exist"),
        ("urls", "missing-urls", "does not exist"),
        ("ut1", "empty-folder", "not a UT1 category folder"),
        ("ut1", "a-file", "is a file"),
        ("domains", "empty-folder", "is a folder"),
        ("ut1", "odd-ut1", "is a folder"),  # its 'domains' is a folder
    ],
)
def test_unusable_source_names_the_path(tmp_path: Path, kind: str, rel: str, words: str) -> None:
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "odd-ut1" / "domains").mkdir(parents=True)
    write(tmp_path / "a-file", "a.com\n")
    src = ListSource(kind, tmp_path / rel)  # type: ignore[arg-type]
    with pytest.raises(ListSourceError) as err:
        list(iter_domains(src))
    assert str(tmp_path / rel) in str(err.value) and words in str(err.value)
    with pytest.raises(ListSourceError):
        build_index([CategorySources("c", (src,))], tmp_path / "index")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "secret", "a.com\n")

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(listsources, "open", denied, raising=False)  # also works as root
    with pytest.raises(ListSourceError, match="permission denied") as err:
        list(iter_domains(ListSource("domains", path)))
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------- index


def test_subdomains_and_lookalikes(tmp_path: Path) -> None:
    lst = write(tmp_path / "d", "example.com\nsub.example.org\n192.0.2.7\n2001:db8::1\n")
    idx = open_index(tmp_path, [cat("bad", ("domains", lst))])
    for host in ("example.com", "www.example.com", "a.b.c.example.com", "x.sub.example.org"):
        assert [m.category for m in idx.match_host(host)] == ["bad"], host
    for host in (
        "badexample.com",
        "example.com.evil.net",
        "examplecom",
        "com",
        "example.org",
        "other.example.org",
        "ample.com",
    ):
        assert idx.match_host(host) == [], host
    assert idx.match_host("www.example.com") == [Match("bad", "example.com", str(lst))]
    assert idx.match_host("192.0.2.7")[0].entry == "192.0.2.7"
    assert idx.match_host("1.192.0.2.7") == []
    assert idx.match_host("92.0.2.7") == []
    assert idx.match_host("2001:db8::1")[0].entry == "2001:db8::1"
    assert idx.categories == ("bad",) and idx.entry_count == 4
    idx.close()


def test_single_label_entries_are_probed(tmp_path: Path) -> None:
    lst = write(tmp_path / "d", "intranet\nexample.com\n")
    with open_index(tmp_path, [cat("local", ("domains", lst))]) as idx:
        assert idx.match_host("wiki.intranet")[0].entry == "intranet"
        assert idx.match_host("intranet")[0].entry == "intranet"
        assert idx.match_host("www.example.com")[0].entry == "example.com"


def test_url_prefix_boundaries(tmp_path: Path) -> None:
    lst = write(tmp_path / "u", "a.com/x\nb.com/dir/\nc.com\nd.com/p?q=1\nwww.e.com/y\n")
    with open_index(tmp_path, [cat("u", ("urls", lst))]) as idx:
        assert [m.entry for m in idx.match_url("a.com", "/x")] == ["a.com/x"]
        assert [m.entry for m in idx.match_url("a.com", "/x/y/z")] == ["a.com/x"]
        assert [m.entry for m in idx.match_url("a.com", "/x?q")] == ["a.com/x"]
        assert idx.match_url("a.com", "/xy") == []
        assert idx.match_url("a.com", "/") == []
        assert idx.match_url("sub.a.com", "/x") == []
        # A folder entry's trailing slash is ignored: it covers /dir as well.
        assert [m.entry for m in idx.match_url("b.com", "/dir/page")] == ["b.com/dir"]
        assert [m.entry for m in idx.match_url("b.com", "/dir")] == ["b.com/dir"]
        assert idx.match_url("b.com", "/directory") == []
        assert [m.entry for m in idx.match_url("c.com", "/anything?at=all")] == ["c.com"]
        assert [m.entry for m in idx.match_url("d.com", "/p?q=1")] == ["d.com/p?q=1"]
        assert idx.match_url("d.com", "/p?q=12") == []
        assert [m.entry for m in idx.match_url("www.e.com", "/y")] == ["www.e.com/y"]
        assert idx.match_url("unlisted.com", "/x") == []
        assert idx.match_host("a.com") == []  # url entries are not domain entries


def test_url_entries_match_as_lenient_servers_read_paths(tmp_path: Path) -> None:
    """An entry covers every spelling some common server reads as its path; the request's
    path arrives canonical (canonical_url / request_url) and is keyed like the entries."""
    lst = write(tmp_path / "u", "a.com/x/page.html\nb.com//Dir/./;p\nc.com/%7Euser/\n")
    spellings = {
        "a.com": [
            "/x/page.html",
            "//x//page.html/",
            "/x/page.html;jsessionid=1",
            "/x;v=2/page.html",
            "/x%2Fpage.html",
            "/x%5cpage.html",
            "/%78/page%2Ehtml",
            "/x/page.html?q",
        ],
        "b.com": ["/Dir", "/Dir/", "//Dir;x/sub", "/%44ir/sub"],
        "c.com": ["/~user", "/%7euser/index.html", "/~user;x/"],
    }
    misses = {
        "a.com": ["/x/page.htm", "/x/page.html5", "/X/page.html", "/y/page.html"],
        "b.com": ["/dir", "/Directory"],
        "c.com": ["/~users", "/user"],
    }
    with open_index(tmp_path, [cat("u", ("urls", lst))]) as idx:
        for host, paths in spellings.items():
            for path in paths:
                assert idx.match_url(host, canonical_url_entry(host + path)[len(host) :]), path
        for host, paths in misses.items():
            for path in paths:
                assert idx.match_url(host, path) == [], path


def test_an_index_of_older_entry_keys_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FORMAT_VERSION names the entries' form: a new one builds a new index file, so one
    built before URL entries were match keys ('b.com/dir/', not 'b.com/dir') is not read."""
    cats = [cat("u", ("urls", write(tmp_path / "u", "b.com/dir/\n")))]
    monkeypatch.setattr(listsources, "FORMAT_VERSION", listsources.FORMAT_VERSION - 1)
    for module in (listbuild, listlayout):  # writes and reads the header's format
        monkeypatch.setattr(module, "FORMAT_VERSION", listsources.FORMAT_VERSION)
    old = build_index(cats, tmp_path / "index")
    monkeypatch.undo()
    new = build_index(cats, tmp_path / "index")
    assert new != old
    with ListIndex.open(new) as idx:
        assert [m.entry for m in idx.match_url("b.com", "/dir")] == ["b.com/dir"]
    with pytest.raises(ListSourceError):
        ListIndex.open(old)  # and an older file on its own is refused, not misread


def test_url_entries_from_ut1(ut1: Path, tmp_path: Path) -> None:
    with open_index(tmp_path, [cat("forums", ("ut1", ut1 / "forums"))]) as idx:
        got = idx.match_url("skyrock.com", "/chat/room?id=3")
        assert got == [Match("forums", "skyrock.com/chat", str(ut1 / "forums" / "urls"))]
        assert idx.match_url("skyrock.com", "/chatroom") == []


def test_expressions_match_full_url(tmp_path: Path) -> None:
    folder = tmp_path / "gamble"
    write(folder / "expressions", "(^|[-/_.])casino([-/_.]|$)\npoker[[:digit:]]+\n")
    write(folder / "domains", "casino.example\n")
    with open_index(tmp_path, [cat("gambling", ("ut1", folder))]) as idx:
        (m,) = idx.match_expressions("http://x.example/play/casino/today")
        assert m == Match("gambling", "(^|[-/_.])casino([-/_.]|$)", str(folder / "expressions"))
        assert idx.match_expressions("http://x.example/CASINO.html")[0].category == "gambling"
        assert idx.match_expressions("http://x.example/poker42")[0].entry == "poker[[:digit:]]+"
        assert idx.match_expressions("http://x.example/casinos") == []
        assert idx.match_expressions("http://x.example/poker") == []
        assert idx.expression_count == 2 and idx.entry_count == 3


def test_domain_in_two_categories(ut1: Path, tmp_path: Path) -> None:
    cats = [
        cat("social_networks", ("ut1", ut1 / "social_networks")),
        cat("forums", ("ut1", ut1 / "forums")),
        cat("gambling", ("ut1", ut1 / "gambling")),
    ]
    with open_index(tmp_path, cats) as idx:
        got = idx.match_host("www.facebook.com")
        assert hosts_of(got) == {("social_networks", "facebook.com"), ("forums", "facebook.com")}
        assert {m.source for m in got} == {
            str(ut1 / "social_networks" / "domains"),
            str(ut1 / "forums" / "domains"),
        }
        assert hosts_of(idx.match_host("pokerstars.com")) == {("gambling", "pokerstars.com")}
        assert idx.match_host("www.example.com") == []


def test_merged_sources_in_one_category(ut1: Path, tmp_path: Path) -> None:
    extra = write(tmp_path / "extra.txt", "casino-extra.example\npokerstars.com\n")
    hosts = write(tmp_path / "hosts", "0.0.0.0 bet.example\n")
    urls = write(tmp_path / "urls.txt", "pokerstars.com/promo\n")
    cats = [
        cat(
            "gambling",
            ("ut1", ut1 / "gambling"),
            ("domains", extra),
            ("hosts", hosts),
            ("urls", urls),
        )
    ]
    with open_index(tmp_path, cats) as idx:
        assert {m.source for m in idx.match_host("www.pokerstars.com")} == {
            str(ut1 / "gambling" / "domains"),
            str(extra),
        }
        assert idx.match_host("casino-extra.example")[0].source == str(extra)
        assert idx.match_host("bet.example")[0].source == str(hosts)
        assert idx.match_url("pokerstars.com", "/promo/x")[0].source == str(urls)
        assert idx.by_category["gambling"] == 121 + 2 + 1 + 5 + 1


def test_rebuild_reuses_index_while_lists_are_unchanged(ut1: Path, tmp_path: Path) -> None:
    cats = [cat("gambling", ("ut1", ut1 / "gambling"))]
    index_dir = tmp_path / "index"
    first = build_index(cats, index_dir)
    inode = first.stat().st_ino
    fp = fingerprint(c for c in cats[0].sources)
    assert build_index(cats, index_dir) == first and first.stat().st_ino == inode
    assert fingerprint(cats[0].sources) == fp

    domains = ut1 / "gambling" / "domains"
    with open(domains, "a") as fh:
        fh.write("new-casino.example\n")
    assert fingerprint(cats[0].sources) != fp
    second = build_index(cats, index_dir)
    assert second != first
    with ListIndex.open(second) as idx:
        assert idx.match_host("new-casino.example")
    renamed = [cat("betting", ("ut1", ut1 / "gambling"))]  # same lists, other category
    third = build_index(renamed, index_dir)
    assert third not in (first, second)
    assert sorted(index_dir.glob("lists-*.idx")) == sorted([second, third])  # 2 newest kept


def test_second_process_sees_same_answers(ut1: Path, tmp_path: Path) -> None:
    cats = [
        cat("social_networks", ("ut1", ut1 / "social_networks")),
        cat("forums", ("ut1", ut1 / "forums")),
    ]
    path = build_index(cats, tmp_path / "index")
    hosts = ["www.facebook.com", "tiktok.com", "nothing.example", "m.twitter.com"]
    with ListIndex.open(path) as idx:
        here = [[[m.category, m.entry, m.source] for m in idx.match_host(h)] for h in hosts]
        here_url = [[m.entry for m in idx.match_url("skyrock.com", "/chat/x")]]
    code = (
        "import json, sys\n"
        "from proxy_addons.core.lists.index import ListIndex\n"
        "idx = ListIndex.open(sys.argv[1])\n"
        "hosts = json.loads(sys.argv[2])\n"
        "out = [[[m.category, m.entry, m.source] for m in idx.match_host(h)] for h in hosts]\n"
        "out_url = [[m.entry for m in idx.match_url('skyrock.com', '/chat/x')]]\n"
        "print(json.dumps([out, out_url]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path), json.dumps(hosts)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert json.loads(proc.stdout) == [here, here_url]
    assert here[0] and here[2] == []


def test_build_in_subprocess(ut1: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    garbage = write(tmp_path / "garbage.txt", "ok.example\nnot a domain\n")
    cats = [cat("gambling", ("ut1", ut1 / "gambling"), ("domains", garbage))]
    with caplog.at_level(logging.INFO):
        path = build_index(cats, tmp_path / "index", in_subprocess=True)
    assert f"{garbage}:2" in caplog.text  # the child's warnings reach our logging
    assert build_index(cats, tmp_path / "index") == path  # same fingerprint, reused
    with ListIndex.open(path) as idx:
        assert idx.match_host("www.pokerstars.com")[0].category == "gambling"
        assert idx.match_host("ok.example")

    missing = [cat("x", ("domains", tmp_path / "nope.txt"))]
    with pytest.raises(ListSourceError, match=str(tmp_path / "nope.txt")):
        build_index(missing, tmp_path / "index", in_subprocess=True)


def test_open_rejects_damaged_file(tmp_path: Path) -> None:
    lst = write(tmp_path / "d", "example.com\n")
    path = build_index([cat("c", ("domains", lst))], tmp_path / "index")
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ListSourceError, match="damaged"):
        ListIndex.open(path)
    rebuilt = build_index([cat("c", ("domains", lst))], tmp_path / "index")
    with ListIndex.open(rebuilt) as idx:
        assert idx.match_host("example.com")


def test_empty_category(tmp_path: Path) -> None:
    lst = write(tmp_path / "d", "# nothing yet\n")
    with open_index(tmp_path, [cat("empty", ("domains", lst))]) as idx:
        assert idx.entry_count == 0 and idx.match_host("example.com") == []
        assert idx.match_url("example.com", "/") == []


# ------------------------------------------------------------------ property test

LABEL = st.sampled_from(["a", "b", "ab", "com", "net", "x-y", "w3", "exam"])
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(listed=st.lists(DOMAIN, max_size=30), queries=st.lists(DOMAIN, max_size=30))
def test_match_host_equals_set_of_suffixes_model(listed: list[str], queries: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lst = write(folder / "d", "".join(d + "\n" for d in listed))
        with ListIndex.open(build_index([cat("c", ("domains", lst))], folder / "i")) as idx:
            model = set(listed)
            for host in queries + [f"www.{d}" for d in listed]:
                expected = {s for s in host_suffixes(host) if s in model}
                got = [m.entry for m in idx.match_host(host)]
                assert sorted(got) == sorted(expected), host


def test_hit_cache_eviction_keeps_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listindex, "_HIT_CACHE_SIZE", 2)
    lst = write(tmp_path / "d", "".join(f"site{i}.example\n" for i in range(10)))
    urls = write(tmp_path / "u", "site1.example/x\n")
    with open_index(tmp_path, [cat("c", ("domains", lst), ("urls", urls))]) as idx:
        for _ in range(3):
            for i in range(10):
                assert [m.entry for m in idx.match_host(f"www.site{i}.example")] == [
                    f"site{i}.example"
                ]
            assert [m.entry for m in idx.match_url("site1.example", "/x/y")] == ["site1.example/x"]
        assert len(idx._hit_cache) <= 2
