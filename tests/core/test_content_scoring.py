"""Weighted phrase scoring (scoring.py, weighted_lists.py, page_text.py), the fast matcher
path it uses, and the policy settings of content filtering."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import brotli
import pytest
from backports import zstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_addons.core.content.page_text import Decoder, Kind, TextExtractor, charset_of, kind_of
from proxy_addons.core.content.phrase_library import PhraseError, compile_phrases, load_libraries
from proxy_addons.core.content.piece_memo import PyPieceMemo, native
from proxy_addons.core.content.scoring import ContentScanner, score_body
from proxy_addons.core.content.weighted_lists import WeightedLists, load_weighted_lists
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.yaml_reader import Where
from proxy_addons.gateway.content_plan import plan_for

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "policies" / "phrases" / "weighted" / f for f in ("en.yaml", "pl.yaml")]


def lists_from(tmp_path: Path, text: str, name: str = "w.yaml") -> WeightedLists:
    path = tmp_path / name
    path.write_text(text)
    return load_weighted_lists([path])


SMALL = """\
name: test
categories:
  pornography:
    phrases:
      porn: 30
      hardcore porn: 80
      sex education: -40
    combinations:
      - {all: [nude, webcam], weight: 40}
  gambling:
    phrases:
      online casino: 50
      porn: 5
"""


@pytest.fixture()
def small(tmp_path: Path) -> WeightedLists:
    return lists_from(tmp_path, SMALL)


@pytest.fixture(scope="module")
def shipped() -> WeightedLists:
    return load_weighted_lists(SHIPPED)


# --------------------------------------------------------------------------- scoring


def test_each_phrase_counts_once_however_often_it_appears(small: WeightedLists) -> None:
    once = small.score_text("porn")
    many = small.score_text("porn " * 500)
    assert once.totals["pornography"] == many.totals["pornography"] == 30


def test_a_phrase_and_a_longer_one_both_count(small: WeightedLists) -> None:
    assert small.score_text("hardcore porn").totals["pornography"] == 110


def test_negative_weights_subtract(small: WeightedLists) -> None:
    score = small.score_text("Sex education lesson: what porn is and why it harms")
    assert score.totals["pornography"] == -10


def test_a_combination_needs_all_its_phrases(small: WeightedLists) -> None:
    assert "pornography" not in small.score_text("a nude painting").totals
    assert small.score_text("a webcam on the desk, a nude statue").totals["pornography"] == 40


def test_categories_are_scored_apart(small: WeightedLists) -> None:
    score = small.score_text("online casino with porn adverts")
    assert score.totals == {"pornography": 30, "gambling": 55}


def test_over_is_strictly_more_than_the_threshold(small: WeightedLists) -> None:
    score = small.score_text("hardcore porn")  # 110
    assert score.over(109) == "pornography"
    assert score.over(110) is None
    assert score.over(50, frozenset({"gambling"})) is None  # only the counted categories


def test_top_names_the_phrases_that_added_most(small: WeightedLists) -> None:
    score = small.score_text("sex education about hardcore porn")
    assert score.top("pornography") == ["hardcore porn", "porn"]  # negatives never named


def test_normalisation_is_the_risk_matchers(small: WeightedLists) -> None:
    for text in ("H4RDC0RE P0RN", "hard-core porn", "h a r d c o r e porn", "hardcore  PORN!!"):
        assert small.score_text(text).totals.get("pornography", 0) >= 80, text
    assert small.score_text("pornography scunthorpe popcorn").totals == {}


def test_shipped_lists_catch_english_and_polish(shipped: WeightedLists) -> None:
    assert shipped.score_text("how to kill yourself, a painless way to die").totals["suicide"] > 100
    polish = shipped.score_text("Jak popelnic samobojstwo? bezbolesna smierc")  # no diacritics
    assert polish.totals["suicide"] > 100
    help_page = shipped.score_text(
        "Suicide prevention: if you think about suicide, call Samaritans on 116 123 or Childline"
    )
    assert help_page.totals["suicide"] < 0
    assert not shipped.score_text("The Romans built roads and aqueducts across Europe.").totals


# --------------------------------------------------------------------------- list mistakes


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: x\ncategories:\n  porn_ography:\n    phrases:\n      porn: 0\n", 5, "weight"),
        ("name: x\ncategories:\n  a:\n    phrases:\n      porn: lots\n", 5, "weight"),
        ("name: x\ncategories:\n  a:\n    phrases:\n      porn: 5000\n", 5, "between"),
        ("name: x\ncategories:\n  a:\n    phrase:\n      porn: 5\n", 4, "expected"),
        ("name: x\ncategories:\n  A-B:\n    phrases:\n      porn: 5\n", 3, "lower-case"),
        ("name: x\ncategorie: {}\n", 2, "not a setting"),
        ("name: x\ncategories:\n  a:\n    phrases:\n      xy: 5\n", 5, "too short"),
        (
            "name: x\ncategories:\n  a:\n    phrases:\n      porn: 5\n      P0RN: 6\n",
            6,
            "already listed",
        ),
        (
            "name: x\ncategories:\n  a:\n    combinations:\n      - {all: [porn], weight: 5}\n",
            5,
            "two or more",
        ),
        (
            "name: x\ncategories:\n  a:\n    combinations:\n      - {all: [porn, nude]}\n",
            5,
            "weight",
        ),
        ("name: x\ncategories:\n  a:\n    phrases: {porn: 5\n", 5, "YAML"),
    ],
)
def test_mistakes_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(PhraseError) as caught:
        lists_from(tmp_path, text)
    assert caught.value.file == str(tmp_path / "w.yaml")
    assert caught.value.line == line
    assert message in str(caught.value)


# --------------------------------------------------------------------------- reading content


def test_html_keeps_only_what_a_person_sees() -> None:
    page = (
        "<html><head><title>T</title><style>.porn{}</style>"
        "<script>var x = 'hardcore porn';</script></head>"
        "<body><!-- online casino --><p class='porn'>Sex&nbsp;education &amp; more</p></body>"
    )
    ext = TextExtractor(Kind.HTML)
    text = ext.feed(page.encode()) + ext.close()
    assert "hardcore" not in text and "casino" not in text and "class" not in text
    assert "Sex\xa0education & more" in text


def test_html_tags_and_scripts_split_across_chunks() -> None:
    page = b"<p>free</p><scr" + b"ipt>hardcore porn</scr" + b"ipt><p>hard" + b"core porn</p>"
    ext = TextExtractor(Kind.HTML)
    parts = [page[:14], page[14:30], page[30:45], page[45:]]
    text = "".join(ext.feed(p) for p in parts) + ext.close()
    assert " ".join(text.split()) == "free hardcore porn"


def test_event_stream_answers_are_joined_as_sent() -> None:
    events = [
        {"choices": [{"delta": {"content": "how to kill your"}}]},
        {"choices": [{"delta": {"content": "self"}}], "id": "chatcmpl-1"},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " now"}},
    ]
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    raw += b"data: [DONE]\n\n"
    ext = TextExtractor(Kind.EVENTS)
    text = "".join(ext.feed(raw[k : k + 7]) for k in range(0, len(raw), 7)) + ext.close()
    assert text == "how to kill yourself now"


def test_json_strings_are_unescaped() -> None:
    ext = TextExtractor(Kind.JSON)
    text = ext.feed(json.dumps({"t": "caf\u00e9 line\nbreak"}).encode()) + ext.close()
    assert "café line break" in text


def test_kinds_and_charsets() -> None:
    assert kind_of("text/html; charset=utf-8") == Kind.HTML
    assert kind_of("application/vnd.api+json") == Kind.JSON
    assert kind_of("text/event-stream") == Kind.EVENTS
    for binary in ("image/png", "video/mp4", "application/octet-stream", "text/css", ""):
        assert kind_of(binary) is None
    assert charset_of("text/html; charset=ISO-8859-2") == "iso8859-2"
    assert charset_of("text/html; charset=bogus") == "utf-8"


def test_charset_is_honoured(shipped: WeightedLists) -> None:
    body = "<p>Jak popełnić samobójstwo? Bezbolesna śmierć</p>".encode("iso-8859-2")
    score = score_body(shipped, body, "text/html; charset=iso-8859-2")
    assert score is not None and score.totals["suicide"] == 195  # 100 + 80 + 15


@pytest.mark.parametrize("name", ["gzip", "deflate", "raw-deflate", "br", "zstd"])
def test_decoder_undoes_encodings_chunk_by_chunk(name: str) -> None:
    data = b"hardcore porn " * 5000
    if name == "raw-deflate":  # servers send this under "deflate" too
        c = zlib.compressobj(wbits=-15)
        packed = c.compress(data) + c.flush()
    else:
        compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}
        packed = compress.get(name, zstd.compress)(data)
    decoder = Decoder("deflate" if name == "raw-deflate" else name)
    out = b"".join(decoder.decompress(packed[k : k + 100]) for k in range(0, len(packed), 100))
    assert out == data


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError):
        Decoder("compress")


# --------------------------------------------------------------------------- chunk boundaries

WORDS = ["the", "river", "porn", "hardcore", "online", "casino", "nude", "webcam", "sex"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    segment=st.integers(min_value=20, max_value=200),
)
def test_scores_do_not_depend_on_how_the_body_is_cut(
    small: WeightedLists, words: list[str], cuts: list[int], segment: int
) -> None:
    body = ("<p>" + " ".join(words) + "</p>").encode()
    whole = score_body(small, body, "text/html")
    scanner = ContentScanner(small, Kind.HTML, segment_chars=segment)
    points = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    for a, b in zip(points, points[1:], strict=False):
        scanner.feed(body[a:b])
    assert whole is not None
    assert scanner.finish().totals == whole.totals


# --------------------------------------------------------------------------- the fast path

VOCAB = [
    "kill", "myself", "k1ll", "mys3lf", "suicide", "s", "u", "i", "c", "d", "e", "how",
    "to", "self", "harm", "the", "skill", "river", "pro", "ana", "want", "die", "chcę",
    "się", "zabić", "sie", "porn", "casino", "online", "!", ".", "@", "$",
]  # fmt: skip


@pytest.fixture(scope="module")
def risk_matcher():  # type: ignore[no-untyped-def]
    return load_libraries(
        [ROOT / "policies" / "phrases" / "en.yaml", ROOT / "policies" / "phrases" / "pl.yaml"]
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VOCAB), max_size=40), st.sampled_from([" ", "", "  ", "\n"]))
def test_categories_in_finds_what_match_finds(risk_matcher, words, sep) -> None:  # type: ignore[no-untyped-def]
    text = sep.join(words)
    expected = {h.category for h in risk_matcher.match(text, max_hits=10_000)}
    assert risk_matcher.categories_in(text) == expected


WEIGHTED_VOCAB = [
    "free", "porn", "p0rn", "hardcore", "hard", "core", "xxx", "videos", "online", "on",
    "line", "casino", "how", "to", "kill", "yourself", "jak", "się", "zabić", "zabic", "sex",
    "education", "the", "a", "s", "e", "x", "!", "-",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(WEIGHTED_VOCAB), max_size=40), st.sampled_from([" ", "", "\n"]))
def test_weighted_lists_find_what_match_finds(shipped, words, sep) -> None:  # type: ignore[no-untyped-def]
    text = sep.join(words)
    matcher = shipped._matcher
    expected = {h.category for h in matcher.match(text, max_hits=10_000)}
    assert shipped.find(text) == expected


PIECE_PHRASES = [
    "kill myself", "suicide", "how to self harm", "hardcore porn", "online casino", "pro ana",
    "free spins", "jak się zabić", "end your life", "porn", "ways to kill yourself",
]  # fmt: skip
PIECE_VOCAB = [
    "kill", "k1ll", "my", "self", "myself", "mys3lf", "s", "u", "i", "c", "d", "e", "how",
    "to", "self-harm", "hard", "core", "hard-core", "porn", "p0rn", "on", "line", "casino",
    "pro", "ana", "free", "spins", "jak", "się", "sie", "zabić", "end", "your", "life", "l",
    "—", "!", "...", "the", "a", "ways", "yourself", "kill-yourself",
]  # fmt: skip


@pytest.fixture(scope="module", params=["native", "python"])
def piece_matcher(request):  # type: ignore[no-untyped-def]
    """Once with the C piece memo, once with the Python one: both find what match finds."""
    if request.param == "native" and not native():
        pytest.skip("the C piece memo is not built")
    where = Where("test", 1)
    matcher = compile_phrases(
        [(f"k{n}", text, where, "test") for n, text in enumerate(PIECE_PHRASES)], "test"
    )
    if request.param == "python":
        matcher._pieces = PyPieceMemo()
    return matcher


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PIECE_VOCAB),
            st.sampled_from([" ", "", "  ", "\n", " - ", "\u00a0", "\t", "\u3000"]),
        ),
        max_size=40,
    )
)
def test_the_piece_path_finds_what_match_finds(piece_matcher, parts) -> None:  # type: ignore[no-untyped-def]
    # One matcher for every example: what it remembers from one text must not hide a
    # phrase in the next.
    text = "".join(word + sep for word, sep in parts)
    expected = {h.category for h in piece_matcher.match(text, max_hits=10_000)}
    assert piece_matcher.categories_in(text) == expected


def test_what_categories_in_remembers_never_hides_a_phrase(risk_matcher) -> None:  # type: ignore[no-untyped-def]
    # A letter repeated: the walk from the second "s" is left to the first, so the pair
    # ("s", "u") must not be remembered as leading nowhere.
    assert risk_matcher.categories_in("s s u x y") == set()
    assert "suicide" in risk_matcher.categories_in("s u i c i d e")
    for text in ("to the river", "how to the", "kill the myself"):
        risk_matcher.categories_in(text)
    assert "suicide" in risk_matcher.categories_in("how to kill myself")


# --------------------------------------------------------------------------- policy


def policy_with(tmp_path: Path, profile_line: str, top: str | None = None) -> Path:
    src = ROOT / "tests" / "data" / "policy"
    import shutil

    shutil.copytree(src, tmp_path / "p")
    shutil.copytree(ROOT / "policies" / "phrases" / "weighted", tmp_path / "p" / "weighted")
    path = tmp_path / "p" / "school.yaml"
    text = path.read_text().replace(
        "  ks2:\n    label: KS2\n    audience: learner\n",
        f"  ks2:\n    label: KS2\n    audience: learner\n{profile_line}",
        1,
    )
    if top is None:
        top = "content_filter:\n  lists: [weighted/en.yaml, weighted/pl.yaml]\n"
    path.write_text(text + top)
    return path


def test_profile_settings_are_read_and_inherited(tmp_path: Path) -> None:
    line = "    content_filter: {threshold: 90, categories: [suicide], scan: {social: 30}}\n"
    policy = load_policy(policy_with(tmp_path, line))
    cf = policy.profiles["ks2"].content_filter
    assert (cf.threshold, cf.categories, cf.scan) == (90, frozenset({"suicide"}), (("social", 30),))
    assert policy.profiles["early_years"].content_filter == cf  # extends ks2
    assert policy.profiles["staff"].content_filter.threshold is None
    assert len(policy.content_lists) == 2


def test_scan_threshold_applies_on_its_sites_only(tmp_path: Path) -> None:
    line = "    content_filter: {threshold: 100, scan: {social: 30}}\n"
    profile = load_policy(policy_with(tmp_path, line)).profiles["ks2"]
    assert plan_for(profile, {"social"}) == (30, frozenset(), "scan:social")
    assert plan_for(profile, {"games"}) == (100, frozenset(), "profile")
    off = load_policy(policy_with(tmp_path / "2", "    content_filter: {scan: {social: 30}}\n"))
    assert plan_for(off.profiles["ks2"], set()) is None


@pytest.mark.parametrize(
    ("line", "top", "message"),
    [
        ("    content_filter: {threshold: -5}\n", None, "whole number"),
        ("    content_filter: {threshold: 100, scan: {nope: 5}}\n", None, "'nope' is not defined"),
        ("    content_filter: {threshold: 100, categories: [nope]}\n", None, "not a category"),
        ("    content_filter: {treshold: 100}\n", None, "not a setting"),
        ("    content_filter: {threshold: 100}\n", "", "no weighted lists"),
        (
            "    content_filter: {threshold: 100}\n",
            "content_filter:\n  lists: [weighted/missing.yaml]\n",
            "does not exist",
        ),
    ],
)
def test_policy_mistakes_are_reported_with_their_line(
    tmp_path: Path, line: str, top: str | None, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_with(tmp_path, line, top))
    assert any(message in m for _, m in caught.value.problems), caught.value.problems
    assert all(w.line > 0 for w, _ in caught.value.problems)


def test_a_broken_weighted_list_breaks_the_policy_with_its_line(tmp_path: Path) -> None:
    path = policy_with(tmp_path, "    content_filter: {threshold: 100}\n")
    bad = path.parent / "weighted" / "pl.yaml"
    bad.write_text(bad.read_text().replace("kasyno online: 50", "kasyno online: zero"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    [(where, message)] = caught.value.problems
    assert where.file == str(bad) and "weight" in message
    assert "kasyno online" in bad.read_text().splitlines()[where.line - 1]
