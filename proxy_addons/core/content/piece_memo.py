"""The content scan's memory of text pieces: which are hot or cold, which runs lead nowhere.

`PhraseMatcher.categories_in` splits a page at whitespace into pieces. It decides once per
distinct piece whether it holds a word that starts a phrase (hot), and once per run of 2 to
MAX_RUN pieces whether every walk from the first died by the last having found nothing
(dead). On a school day most of a page's pieces and runs have been seen before, so a scan is
mostly looking them up. In Python that costs a string object and a dictionary look-up per
piece, about as much as the rest of the gateway's work on a page; the C version
(`_piece_memo.c`, built by `pip install`) hashes the pieces where they lie in the text, judges
plain pieces itself from the matcher's index (`index`) and looks lines seen settled up
whole. It holds no matching rules, only what the matcher told it. `PyPieceMemo` is the same
memory in Python, used when the C one isn't built; the tests hold both to the same answers.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence
from typing import Protocol, overload

try:
    from proxy_addons.core.content import _piece_memo
except ImportError:  # built without a C compiler: PyPieceMemo stands in
    _piece_memo = None  # type: ignore[assignment]

__all__ = ["MAX_RUN", "PieceMemo", "Pieces", "PyPieceMemo", "native"]

MAX_RUN = 6  # pieces in a row remembered as leading nowhere (as _piece_memo.c's)


class Memo(Protocol):
    @property
    def pieces(self) -> int: ...
    @property
    def pairs(self) -> int: ...
    def scan(self, text: str) -> tuple[list[str], list[int], Sequence[str]]: ...
    def learn(self, piece: str, hot: bool) -> None: ...
    def bury(self, piece: str, next_piece: str, /, *more: str) -> None: ...
    def knows(self, piece: str) -> bool | None: ...
    def index(self, *, fuzzy_min: int, **keys: Iterable[str]) -> None: ...
    def clear(self) -> None: ...
    def clear_dead(self) -> None: ...


class Pieces(Sequence[str]):
    """A text's pieces, each sliced out only when asked for (from the C scan's bounds)."""

    __slots__ = ("_at", "_text")

    def __init__(self, text: str, bounds: bytes) -> None:
        self._text = text
        self._at = memoryview(bounds).cast("i")

    def __len__(self) -> int:
        return len(self._at) // 2

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> list[str]: ...
    def __getitem__(self, k: int | slice) -> str | list[str]:
        at, text = self._at, self._text
        if isinstance(k, slice):
            return [text[at[2 * j] : at[2 * j + 1]] for j in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError("piece index out of range")
        return text[at[2 * k] : at[2 * k + 1]]


class NativeMemo:
    """The C memo, with its scan's bounds made a `Pieces`."""

    __slots__ = ("_memo", "bury", "clear", "clear_dead", "index", "knows", "learn")

    def __init__(self, memo: _piece_memo.PieceMemo) -> None:
        self._memo = memo
        self.index = memo.index
        self.learn = memo.learn
        self.bury = memo.bury
        self.knows = memo.knows
        self.clear = memo.clear
        self.clear_dead = memo.clear_dead

    @property
    def pieces(self) -> int:
        return self._memo.pieces

    @property
    def pairs(self) -> int:
        return self._memo.pairs

    def scan(self, text: str) -> tuple[list[str], list[int], Sequence[str]]:
        unknown, alive, bounds = self._memo.scan(text)
        return unknown, alive, Pieces(text, bounds)


_POSITIONS: list[int] = []


def _positions(n: int) -> list[int]:
    """0 .. n-1 and perhaps more, made once: `compress` over it picks positions without
    making an int object for every piece of a page."""
    global _POSITIONS
    if len(_POSITIONS) < n:
        _POSITIONS = list(range(max(n, 2 * len(_POSITIONS), 1 << 14)))
    return _POSITIONS


class PyPieceMemo:
    """The memo in Python: a dictionary of pieces and a set of dead pairs."""

    __slots__ = ("_dead", "_hot")

    def __init__(self) -> None:
        self._hot: dict[str, bool] = {}
        self._dead: set[tuple[str, ...]] = set()

    @property
    def pieces(self) -> int:
        return len(self._hot)

    @property
    def pairs(self) -> int:
        return len(self._dead)

    def scan(self, text: str) -> tuple[list[str], list[int], Sequence[str]]:
        """The distinct pieces not learnt yet; else the hot pieces not before a dead pair.

        Every step is C-level: one look-up per piece, then the hot ones paired with their
        next piece and checked against the dead pairs.
        """
        chunks = text.split()
        if not chunks:
            return [], [], chunks
        look_up = operator.itemgetter(*chunks) if len(chunks) > 1 else None
        try:
            flags = look_up(self._hot) if look_up else (self._hot[chunks[0]],)
        except KeyError:
            return list(set(chunks).difference(self._hot)), [], chunks
        if not any(flags):
            return [], [], chunks
        hot = list(itertools.compress(_positions(len(chunks)), flags))
        nexts = chunks[1:]
        nexts.append("")  # the last piece pairs with "", never dead
        pairs = zip(map(chunks.__getitem__, hot), map(nexts.__getitem__, hot), strict=True)
        dead = self._dead
        alive = itertools.compress(hot, map(operator.not_, map(dead.__contains__, pairs)))
        return [], [c for c in alive if not self._dead_run(chunks, c)], chunks

    def _dead_run(self, chunks: list[str], c: int) -> bool:
        """Is piece c dead as a run of 3 to MAX_RUN pieces?"""
        return any(
            tuple(chunks[c : c + k]) in self._dead
            for k in range(3, min(MAX_RUN, len(chunks) - c) + 1)
        )

    def learn(self, piece: str, hot: bool) -> None:
        self._hot[piece] = hot

    def bury(self, piece: str, next_piece: str, /, *more: str) -> None:
        if len(more) > MAX_RUN - 2:
            raise TypeError(f"bury() takes 2 to {MAX_RUN} pieces")
        self._dead.add((piece, next_piece, *more))

    def knows(self, piece: str) -> bool | None:
        return self._hot.get(piece)

    def index(self, *, fuzzy_min: int, **keys: Iterable[str]) -> None:
        """Not used here: every piece never seen goes to the matcher, which is slower, not
        different. Forgets what was learnt, as the C one does."""
        self.clear()

    def clear(self) -> None:
        self._hot.clear()
        self._dead.clear()

    def clear_dead(self) -> None:
        self._dead.clear()


def native() -> bool:
    """Is the C memo built? (`schoolgate doctor` and the bench say which one runs.)"""
    return _piece_memo is not None


def PieceMemo() -> Memo:  # noqa: N802 - a factory standing in for the class
    """The C memo if it is built, else the Python one."""
    return NativeMemo(_piece_memo.PieceMemo()) if native() else PyPieceMemo()
