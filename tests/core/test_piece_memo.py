"""The content scan's piece memory: the C one answers exactly as the Python one does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_addons.core.content import phrases
from proxy_addons.core.content.phrase_index import COMPOUND_MIN, FUZZY_MIN, piece_index
from proxy_addons.core.content.phrase_library import load_libraries
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.content.piece_memo import Pieces, PyPieceMemo, native
from proxy_addons.core.content.weighted_lists import load_weighted_lists
from proxy_addons.core.content.words import normalise

if not native():  # pragma: no cover - the C part is built by `make` (pip install -e .)
    pytest.skip("the C piece memo is not built", allow_module_level=True)

from proxy_addons.core.content import _piece_memo  # noqa: E402
from proxy_addons.core.content.piece_memo import NativeMemo  # noqa: E402

# Pieces in every storage width CPython has (Latin-1, UCS-2, UCS-4), and whitespace of
# every kind str.split() splits at.
PIECES = ["the", "río", "się", "zabić", "日本", "😀x", "a", "A", "x\x00y", "—", "porn", "p0rn"]
SPACES = [" ", "  ", "\n", "\t", "\u00a0", "\u3000", "\u2028", "\x1c", "\x85", " \r\n "]


def memos() -> tuple[NativeMemo, PyPieceMemo]:
    return NativeMemo(_piece_memo.PieceMemo()), PyPieceMemo()


texts = st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(SPACES)), max_size=30).map(
    lambda parts: "".join(p + s for p, s in parts)
)
lessons = st.lists(
    st.one_of(
        st.tuples(st.just("learn"), st.sampled_from(PIECES), st.booleans()),
        st.tuples(
            st.just("bury"),
            st.sampled_from(PIECES),
            st.lists(st.sampled_from(PIECES), min_size=1, max_size=5),
        ),
    ),
    max_size=40,
)


def teach(memo: NativeMemo | PyPieceMemo, steps: list[tuple[str, str, object]]) -> None:
    for step, a, b in steps:
        if step == "learn":
            memo.learn(a, bool(b))
        else:
            memo.bury(a, *b)  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(lead=st.sampled_from(["", " ", "\u3000"]), text=texts, steps=lessons, more=lessons)
def test_the_c_memo_answers_as_the_python_one(
    lead: str,
    text: str,
    steps: list,  # type: ignore[type-arg]
    more: list,  # type: ignore[type-arg]
) -> None:
    c_memo, py_memo = memos()
    # Scanned, taught more, scanned again: what the C memo keeps from a scan (settled
    # lines) must not outlive what it was told.
    for lesson in (steps, more, []):
        teach(c_memo, lesson)
        teach(py_memo, lesson)
        c_unknown, c_alive, c_pieces = c_memo.scan(lead + text)
        py_unknown, py_alive, py_pieces = py_memo.scan(lead + text)
        assert sorted(c_unknown) == sorted(py_unknown)
        assert c_alive == py_alive
        assert list(c_pieces) == list(py_pieces) == (lead + text).split()
        assert (c_memo.pieces, c_memo.pairs) == (py_memo.pieces, py_memo.pairs)
        for piece in PIECES:
            assert c_memo.knows(piece) == py_memo.knows(piece)


def test_a_scan_names_new_pieces_then_the_live_hot_ones() -> None:
    memo, _ = memos()
    unknown, alive, _ = memo.scan("to the river to the sea")
    assert sorted(unknown) == ["river", "sea", "the", "to"] and alive == []
    for piece, hot in (("to", True), ("the", False), ("river", False), ("sea", False)):
        memo.learn(piece, hot)
    assert memo.scan("to the river to the sea")[:2] == ([], [0, 3])
    memo.bury("to", "the")  # every walk from "to" died at "the", finding nothing
    assert memo.scan("to the river to the sea")[:2] == ([], [])
    assert memo.scan("to the river to")[:2] == ([], [3])  # the last piece pairs with nothing
    memo.learn("the", True)
    assert memo.scan("to the river")[:2] == ([], [1])
    memo.bury("the", "river", "to")  # walks from "the" went on into "to" before dying
    assert memo.scan("to the river to")[:2] == ([], [3])
    assert memo.scan("to the river sea")[:2] == ([], [1])  # a different third piece
    memo.learn("the", False)
    assert memo.scan("to thee")[:2] == (["thee"], [])
    memo.learn("the", True)  # learnt again: the newer answer holds
    assert memo.knows("the") is True and memo.pieces == 4
    assert memo.pairs == 2
    memo.clear_dead()
    assert memo.pairs == 0 and memo.scan("to the")[:2] == ([], [0, 1])
    memo.clear()
    assert memo.pieces == 0 and memo.knows("to") is None


def test_many_pieces_are_kept_through_the_tables_growth() -> None:
    memo, _ = memos()
    words = [f"w{n}" for n in range(20_000)]
    for n, word in enumerate(words):
        memo.learn(word, n % 7 == 0)
    for n in range(0, 20_000, 2):
        memo.bury(words[n], words[n + 1])
    text = " ".join(words)
    unknown, alive, pieces = memo.scan(text)
    assert unknown == [] and len(pieces) == 20_000 and pieces[-1] == "w19999"
    # Hot pieces are every 7th; those at even places are followed by a dead pair.
    assert alive == [n for n in range(0, 20_000, 7) if n % 2 == 1]


def test_pieces_slice_like_a_list() -> None:
    text = "  a  bb\u3000ccc\nd "
    memo, _ = memos()
    pieces = memo.scan(text)[2]
    assert isinstance(pieces, Pieces)
    assert len(pieces) == 4 and pieces[-1] == "d" and pieces[1:3] == ["bb", "ccc"]
    assert pieces[2:] == ["ccc", "d"] and pieces[:0] == []
    with pytest.raises(IndexError):
        pieces[4]
    assert list(memo.scan("")[2]) == [] and memo.scan(" \n ")[:2] == ([], [])


@pytest.mark.parametrize("bad", ["", "a b", "a\u3000b"])
def test_a_piece_with_whitespace_or_nothing_is_refused(bad: str) -> None:
    memo = _piece_memo.PieceMemo()
    with pytest.raises(ValueError, match="piece"):
        memo.learn(bad, True)
    with pytest.raises(ValueError, match="next"):
        memo.bury("ok", bad)
    with pytest.raises(ValueError, match="next"):
        memo.bury("ok", "ok", bad)
    with pytest.raises(TypeError, match="2 to 6"):
        memo.bury("a", "b", "c", "d", "e", "f", "g")
    with pytest.raises(TypeError, match="2 to 6"):
        PyPieceMemo().bury("a", "b", "c", "d", "e", "f", "g")
    with pytest.raises(TypeError):
        memo.scan(b"bytes")


# --------------------------------------------------------------------------- the index
# With the matcher's index the C memo judges plain pieces itself: cold ones without asking
# the matcher, and hot one-word pieces whose walks die at the next word without a walk.
# Nothing it judges may hide a phrase: a cold piece has no hot word, and the matcher finds
# in any text what `match` finds.

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def matchers() -> dict[str, PhraseMatcher]:
    weighted = load_weighted_lists(
        [ROOT / "policies" / "phrases" / "weighted" / f for f in ("en.yaml", "pl.yaml")]
    )
    risk = load_libraries([ROOT / "policies" / "phrases" / f for f in ("en.yaml", "pl.yaml")])
    return {"weighted": weighted._matcher, "risk": risk}


def phrase_words(matcher: PhraseMatcher) -> list[str]:
    index = piece_index(matcher._words, matcher._letters, matcher._innocent)
    return sorted(
        {w for w in index["firsts"] if w.isalpha()}
        | {k.split(" ")[1] for k in index["second"] if k.split(" ")[1].isalpha()}
    )


COMMON = "the a an to of and you how get free best must way it i is be he on in at".split()
PUNCTUATION = ["", "", "", ".", ",", "(", ")", '"', "-", "--", ":", ";", "?", "/", "_", "#"]


@st.composite
def plain_words(draw: st.DrawFn, vocabulary: list[str]) -> str:
    """A word as pages have it: a phrase word, a bit of one, one letter off one, common."""
    word = draw(st.sampled_from(vocabulary + COMMON))
    change = draw(st.sampled_from(["as is", "as is", "cut", "cut", "misspelt", "doubled"]))
    if change == "cut" and len(word) > 1:
        a = draw(st.integers(0, len(word) - 1))
        b = draw(st.integers(a + 1, len(word)))
        word = word[a:b]
    elif change == "misspelt" and len(word) > 1:
        k = draw(st.integers(0, len(word) - 1))
        how = draw(st.sampled_from(["wrong", "missing", "extra", "swapped"]))
        letter = draw(st.sampled_from("abcdeilnorstuyz"))
        if how == "wrong":
            word = word[:k] + letter + word[k + 1 :]
        elif how == "missing":
            word = word[:k] + word[k + 1 :]
        elif how == "extra":
            word = word[:k] + letter + word[k:]
        elif k + 1 < len(word):
            word = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
    elif change == "doubled" and word:
        k = draw(st.integers(0, len(word) - 1))
        word = word[: k + 1] + word[k] * draw(st.integers(1, 3)) + word[k + 1 :]
    if draw(st.booleans()):
        word = word.upper() if draw(st.booleans()) else word.capitalize()
    return word or "a"


@st.composite
def plain_pieces(draw: st.DrawFn, vocabulary: list[str]) -> str:
    words = draw(st.lists(plain_words(vocabulary), min_size=1, max_size=3))
    inner = draw(st.sampled_from(["-", "/", ".", "_", ":"]))
    return (
        draw(st.sampled_from(PUNCTUATION)) + inner.join(words) + draw(st.sampled_from(PUNCTUATION))
    )


@pytest.mark.parametrize("which", ["weighted", "risk"])
def test_a_plain_piece_judged_cold_has_no_hot_word(
    matchers: dict[str, PhraseMatcher], which: str
) -> None:
    matcher = matchers[which]
    memo = _piece_memo.PieceMemo()
    memo.index(
        **piece_index(matcher._words, matcher._letters, matcher._innocent), fuzzy_min=FUZZY_MIN
    )
    judged = {"cold": 0, "left": 0}

    @settings(max_examples=1500, deadline=None)
    @given(plain_pieces(phrase_words(matcher)))
    def check(piece: str) -> None:
        unknown = memo.scan(piece)[0]
        words = [w for w in matcher._piece_words(piece)]
        if not unknown:  # judged cold here
            judged["cold"] += 1
            assert memo.knows(piece) is False
            assert not [w for w in words if matcher._is_hot(w)], piece
        else:
            judged["left"] += 1

    check()
    assert judged["cold"] > 100 and judged["left"] > 100  # both ways were exercised


@pytest.mark.parametrize("which", ["weighted", "risk"])
def test_pieces_judged_here_hide_no_phrase(matchers: dict[str, PhraseMatcher], which: str) -> None:
    matcher = matchers[which]
    vocabulary = phrase_words(matcher)

    @settings(max_examples=600, deadline=None)
    @given(
        st.lists(
            st.one_of(plain_pieces(vocabulary), st.sampled_from(["1", "2", "u", "n", "4", "—"])),
            max_size=30,
        ),
        st.sampled_from([" ", "\n", "  "]),
    )
    def check(pieces: list[str], sep: str) -> None:
        # One matcher for all examples: what the memo keeps from one text must not hide a
        # phrase in the next.
        text = sep.join(pieces)
        expected = {h.category for h in matcher.match(text, max_hits=10_000)}
        assert matcher.categories_in(text) == expected

    check()


def test_walks_are_left_to_the_matcher_only_where_they_go_on() -> None:
    lists = load_weighted_lists(
        [ROOT / "policies" / "phrases" / "weighted" / f for f in ("en.yaml", "pl.yaml")]
    )
    matcher = lists._matcher
    memo = matcher._pieces
    assert matcher.categories_in("hard") == set() and memo.knows("hard") is True
    assert memo.scan("work")[0] == []  # a plain word that starts nothing: judged here
    # "hard work" goes nowhere ("hardw..." is no phrase's start): not handed back to walk.
    assert memo.scan("hard work")[:2] == ([], [])
    # "hard core" goes on ("hardcore porn"), as does "online casino" (a second word, also
    # one letter off): the matcher walks them.
    assert memo.scan("hard core")[1] == [0]
    assert matcher.categories_in("online") == set()
    assert memo.scan("online casino")[1] == [0] and memo.scan("online casimo")[1] == [0]
    assert memo.scan("online shop")[1] == []
    # And finds the phrases however often the first word was seen before other words.
    assert lists.score_text("hard core porn").totals == lists.score_text("hardcore porn").totals
    assert lists.score_text("hard core porn").totals["pornography"] > 0
    assert lists.score_text("online casimo").totals == lists.score_text("online casino").totals
    assert lists.score_text("online casino").totals["gambling"] > 0


def listed_phrases(matcher: PhraseMatcher) -> list[str]:
    """Every phrase of the matcher's lists, as written."""
    out: set[str] = set()
    todo = [matcher._words]
    while todo:
        node = todo.pop()
        out.update(entry.phrase for entry, _ in node.entries)
        todo.extend(node.children.values())
    return sorted(out)


def spellings(phrase: str) -> list[str]:
    """Ways a page may type a phrase that the matcher reads as it: split where a letter
    repeats across the split ("kil lmyself"), a first word one letter off, a long single word
    one letter off."""
    words = normalise(phrase).split()
    letters = "".join(words)
    out = []
    if len(letters) >= COMPOUND_MIN and letters.isalpha():
        for p in range(1, len(letters) - 1, 3):
            out.append(f"{letters[: p + 1]} {letters[p:]}")
    first = words[0]
    if first.isalpha() and len(first) >= FUZZY_MIN + 1:
        k = len(first) // 2
        wrong = "x" if first[k] != "x" else "y"
        out.append(" ".join([first[:k] + wrong + first[k + 1 :], *words[1:]]))
        out.append(" ".join([first[:k] + first[k + 1] + first[k] + first[k + 2 :], *words[1:]]))
    return out


@pytest.mark.parametrize("which", ["weighted", "risk"])
def test_phrases_typed_apart_or_misspelt_are_found_after_their_first_word(
    matchers: dict[str, PhraseMatcher], which: str
) -> None:
    matcher = matchers[which]
    cases = [s for phrase in listed_phrases(matcher) for s in spellings(phrase)]
    assert len(cases) > 100
    for case in cases:
        first = case.split()[0]
        # The first word is met before ordinary words first: the memo has judged its
        # pairs with them, and must not take the phrase's next word for one of those.
        matcher.categories_in(f"{first} shop. {first} time, {first} river")
        text = f"the {case} today"
        expected = {h.category for h in matcher.match(text, max_hits=10_000)}
        assert matcher.categories_in(text) == expected, text


def test_lines_seen_settled_are_looked_up_whole_and_forgotten_when_facts_change() -> None:
    memo = _piece_memo.PieceMemo()
    for piece, hot in (("to", True), ("the", False), ("river", False), ("sea", True)):
        memo.learn(piece, hot)
    memo.bury("to", "the")
    text = "to the river\nsea to the river\nto the sea"
    # Hot: to (dead before "the") and sea: alive before "to" and at the very end.
    assert memo.scan(text)[:2] == ([], [3, 9])
    # "to the river" and "to the sea" are settled (the second's "sea" still pairs on);
    # "sea to the river" is not ("sea to" is alive).
    assert memo.lines == 2
    assert memo.scan(text)[:2] == ([], [3, 9])  # the same answer from the settled lines
    memo.learn("the", True)  # a piece taken for cold in settled lines is hot after all
    assert memo.lines == 0 and memo.scan(text)[:2] == ([], [1, 3, 5, 8, 9])
    memo.clear_dead()  # lines settled by dead pairs are unsettled again
    assert memo.lines == 0 and memo.scan(text)[:2] == ([], [0, 1, 3, 4, 5, 7, 8, 9])


def memo_scan_learns_nothing(matcher: PhraseMatcher, text: str) -> bool:
    return matcher._pieces.scan(text)[0] == []


def test_the_memory_is_bounded_whatever_pages_bring(monkeypatch: pytest.MonkeyPatch) -> None:
    # The C memo adds the plain pieces and pairs it judges itself: the matcher empties it
    # when full, before a page, even when no page ever hands a piece back to learn.
    monkeypatch.setattr(phrases, "_CHUNK_CACHE", 500)
    lists = load_weighted_lists(
        [ROOT / "policies" / "phrases" / "weighted" / f for f in ("en.yaml", "pl.yaml")]
    )
    matcher = lists._matcher

    def letters(n: int) -> str:  # n in base 6, in letters that start no phrase
        out = ""
        for _ in range(4):
            n, digit = divmod(n, 6)
            out += "qwxzvj"[digit]
        return out

    most = 0
    for n in range(40):
        # Plain words that start nothing: judged cold in C, never handed back to learn.
        text = " ".join(f"qq{letters(n)}x{letters(k)}" for k in range(100))
        assert memo_scan_learns_nothing(matcher, text)
        assert matcher.categories_in(text) == set()
        most = max(most, matcher._pieces.pieces)
    assert most < 700  # of the 4,000 distinct pieces the pages brought
    assert matcher.categories_in("hardcore porn") != set()  # and it still finds what it should
