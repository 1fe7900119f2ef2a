"""The content scan's piece memory: the C one answers exactly as the Python one does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_addons.piece_memo import Pieces, PyPieceMemo, native

if not native():  # pragma: no cover - the C part is built by `make` (pip install -e .)
    pytest.skip("the C piece memo is not built", allow_module_level=True)

from proxy_addons import _piece_memo  # noqa: E402
from proxy_addons.piece_memo import NativeMemo  # noqa: E402

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
            st.lists(st.sampled_from(PIECES), min_size=1, max_size=2),
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
@given(lead=st.sampled_from(["", " ", "\u3000"]), text=texts, steps=lessons)
def test_the_c_memo_answers_as_the_python_one(lead: str, text: str, steps: list) -> None:  # type: ignore[type-arg]
    c_memo, py_memo = memos()
    teach(c_memo, steps)
    teach(py_memo, steps)
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
    with pytest.raises(ValueError, match="third"):
        memo.bury("ok", "ok", bad)
    with pytest.raises(TypeError):
        memo.scan(b"bytes")
