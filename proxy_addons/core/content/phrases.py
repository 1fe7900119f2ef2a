"""The risk-phrase matcher: finds library phrases in search terms and page text.

Text is normalised word by word (`words.py`) and walked through the indexes (`phrase_index.py`):
a few dictionary look-ups per word, so a 100 KB page takes milliseconds. `match` gives every
phrase found (search terms, alerts); `categories_in` only the categories, faster on long text
(page scanning), remembering pieces of text between pages (`piece_memo.py`). Libraries are
read by `phrase_library.py`.

Over 400 lines: one class, whose two passes (`match` and `categories_in`) share its indexes
and its caches; splitting it would spread one algorithm over two files.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from proxy_addons.core.content.phrase_index import (
    COMPOUND_MIN,
    FUZZY_MIN,
    LetterNode,
    LetterState,
    PhraseEntry,
    WordNode,
    first_letters,
    piece_index,
    run_at,
    walk_letters,
)
from proxy_addons.core.content.piece_memo import MAX_RUN, PieceMemo
from proxy_addons.core.content.words import (
    TOKEN,
    LazyToks,
    Tok,
    merged,
    normalise,
    phrase_spellings,
    prepare,
    shown,
    skeleton,
    tokens,
    word_tok,
)

CATEGORIES = (
    "self_harm",
    "suicide",
    "extremism",
    "cse_grooming",
    "bullying",
    "pornography",
    "drugs",
    "weapons",
    "violence",
    "gambling",
)


@dataclass(frozen=True)
class PhraseHit:
    """One library phrase found in the text."""

    category: str
    severity: int  # 1 (weak sign) .. 5 (immediate risk)
    phrase: str  # as written in the library
    library: str  # the library's name
    matched: str  # the text that matched, normalised


_Start = tuple[list[tuple[WordNode, int]], list[LetterState], list[WordNode]]
_Hit = tuple[int, int, "PhraseEntry"]  # first word, last word, phrase
_START_CACHE = 50_000  # words remembered; common words repeat from page to page
_NOWHERE: _Start = ([], [], [])  # shared by the many words that start no phrase
_CHUNK_CACHE = 100_000  # text pieces remembered by categories_in


class PhraseMatcher:
    """Finds library phrases in text; build one with `phrase_library.load_libraries`."""

    def __init__(self, entries: Sequence[tuple[Sequence[Tok], PhraseEntry]]) -> None:
        self._words = WordNode()
        self._letters = LetterNode()
        self._innocent = WordNode()
        self.sizes: dict[str, dict[str, int]] = {}  # library -> category -> phrases
        for toks, entry in entries:
            spellings = phrase_spellings(toks)
            if not entry.category:
                for words in spellings:
                    self._innocent.insert(words, entry, tolerant=False)
                continue
            lib = self.sizes.setdefault(entry.library, dict.fromkeys(CATEGORIES, 0))
            lib[entry.category] = lib.get(entry.category, 0) + 1  # other keys: compile_phrases
            for words in spellings:
                self._words.insert(words, entry, tolerant=True)
                joined = skeleton("".join(words))
                if len(words) > 1 and len(joined) >= FUZZY_MIN:  # "killmyself", "#endmylife"
                    self._words.insert((joined,), entry, tolerant=False)
                long = len(joined) >= COMPOUND_MIN
                self._letters.insert(merged(joined), entry, long=long)
        self._words.finish()
        self._innocent.finish()
        self._starts: dict[str, _Start] = {}
        # For categories_in: a piece of text -> its words; words that start something in an
        # index (hot) and those that don't.
        self._chunk_words: dict[str, tuple[str, ...]] = {}
        self._hot_words: set[str] = set()
        self._cold_words: set[str] = set()
        self._letters_follow: dict[str, frozenset[str]] = {}  # word -> letters walks go on by
        self._dead_pairs: set[str] = set()  # "word next": two words no phrase starts
        self._pieces = PieceMemo()  # pieces of text hot or cold; runs of them leading nowhere
        # Runs of pieces whose walks found phrases: first piece -> (the rest, categories).
        self._run_hits: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]] = {}
        self._pieces.index(
            **piece_index(self._words, self._letters, self._innocent), fuzzy_min=FUZZY_MIN
        )

    def __len__(self) -> int:
        return sum(sum(lib.values()) for lib in self.sizes.values())

    @staticmethod
    def normalise(text: str) -> str:
        """The normal form text is matched in (see the module function)."""
        return normalise(text)

    def match(self, text: str, *, max_hits: int = 20) -> list[PhraseHit]:
        """Library phrases in `text`, highest severity first, each phrase once."""
        toks = tokens(text)
        if not toks or max_hits <= 0:
            return []
        found: list[tuple[int, int, PhraseEntry]] = []
        reach = [-1] * len(toks)  # the last word an innocent phrase from here covers
        for i, tok in enumerate(toks):
            words, letters, innocent = self._starts.get(tok.raw) or self._start(tok)
            if words:
                self._more_words(toks, i, words, found)
            # A letter repeated ("l l l l") adds nothing to a walk from its first copy, so
            # walks start there only: a page of "l l l ..." costs one walk, not one per "l".
            if letters and not (i and tok.single and tok.mkeys == toks[i - 1].mkeys):
                self._more_letters(toks, i, letters, found)
            if innocent:
                reach[i] = self._innocent_end(toks, i, innocent)
        for i in range(1, len(reach)):
            reach[i] = max(reach[i], reach[i - 1])
        first: dict[PhraseEntry, tuple[int, int]] = {}
        for start, end, entry in sorted(found, key=lambda h: (h[0], h[1])):
            if reach[start] < end and entry not in first:
                first[entry] = (start, end)
        # A phrase inside a longer one of the same category and no lower severity adds nothing.
        kept = [
            (entry, span)
            for entry, span in first.items()
            if not any(
                other is not entry
                and other.category == entry.category
                and other.severity >= entry.severity
                and o_span[0] <= span[0]
                and span[1] <= o_span[1]
                and o_span != span
                for other, o_span in first.items()
            )
        ]
        kept.sort(key=lambda es: (-es[0].severity, es[1][0], es[0].category, es[0].phrase))
        return [
            PhraseHit(e.category, e.severity, e.phrase, e.library, shown(toks[s : t + 1]))
            for e, (s, t) in kept[:max_hits]
        ]

    def categories_in(self, text: str) -> set[str]:
        """The categories of every phrase `match` would find in `text`, faster on long text.

        For page scanning (scoring.py and alerting), where a 100 KB page must cost
        well under a millisecond. The same normalisation, indexes and walks as `match`, but
        the text is split at whitespace (no word crosses it), each distinct piece is judged
        once and remembered (piece_memo.py), and walks run only from the pieces that start
        something, unless the run of pieces after them is known to lead nowhere ("to the",
        "on a"). Innocent phrases only take hits away, so the word-by-word pass that applies
        them runs only on a text where the pieces found something.
        """
        found_any = self._categories_by_piece(text)
        if not found_any or not self._innocent.children:
            # Innocent phrases only take hits away: a text where the piece walks find no
            # phrase (most pages) is done without the word-by-word pass below.
            return found_any
        chunks = text.split()
        words_of = {piece: self._piece_words(piece) for piece in set(chunks)}
        words = list(itertools.chain.from_iterable(map(words_of.__getitem__, chunks)))
        hot = {word for word in set(itertools.chain(*words_of.values())) if self._is_hot(word)}
        if not hot:
            return set()
        toks = LazyToks(words)  # most words are never looked at as more than a string
        starts, follow = self._starts, self._letters_follow
        last = len(toks) - 1
        found: list[_Hit] = []
        innocent: list[tuple[int, int]] = []  # (first word, last word) of innocent phrases
        dead = self._dead_pairs
        if len(dead) >= _START_CACHE:
            dead.clear()
        for i in itertools.compress(range(len(words)), map(hot.__contains__, words)):
            # Two words as one string: strings are no work for the garbage collector.
            pair = f"{words[i]} {words[i + 1]}" if i < last else ""
            if pair in dead:
                continue
            tok = toks[i]
            w_states, letters, inno = starts.get(tok.raw) or self._start(tok)
            before, ended = len(found), i
            if w_states:
                ended = self._more_words(toks, i, w_states, found)
            repeat = tok.single and i and tok.mkeys == toks[i - 1].mkeys  # walked from there
            if letters and i < last and not repeat:
                # Most letter walks die at the next word: a set look-up says so, not a walk.
                nexts = follow.get(tok.raw)
                if nexts is None:
                    if len(follow) >= _START_CACHE:
                        follow.clear()
                    nexts = follow[tok.raw] = first_letters(letters)
                if any(k[:1] in nexts for k in toks[i + 1].mkeys):
                    ended = max(ended, self._more_letters(toks, i, letters, found))
            if pair and not (inno or repeat) and ended <= i + 1 and len(found) == before:
                # Every walk from this word died at the next, finding nothing: so it will
                # wherever these two words meet again ("to the", "on a").
                dead.add(pair)
            if inno:
                end = self._innocent_end(toks, i, inno)
                if end >= 0:
                    innocent.append((i, end))
        reach_at = [s for s, _ in innocent]
        reach = list(itertools.accumulate((e for _, e in innocent), max))
        out: set[str] = set()
        for first, end, entry in found:
            k = bisect.bisect_right(reach_at, first) - 1
            if k < 0 or reach[k] < end:
                out.add(entry.category)
        return out

    def _is_hot(self, word: str) -> bool:
        """Does `word` start something in an index? Remembered either way."""
        if word in self._hot_words:
            return True
        if word in self._cold_words:
            return False
        if len(self._cold_words) + len(self._hot_words) >= _START_CACHE:
            self._cold_words.clear()
            self._hot_words.clear()
        start = self._starts.get(word) or self._start(word_tok(word))
        (self._cold_words if start is _NOWHERE else self._hot_words).add(word)
        return start is not _NOWHERE

    def _categories_by_piece(self, text: str) -> set[str]:
        """`categories_in` for matchers without innocent phrases (weighted_lists.py's lists).

        Works on the whitespace-separated pieces themselves, never building the text's word
        list: a piece is hot if one of its words is, and pieces in a row (2 to MAX_RUN) by
        which every walk from the first died having found nothing are remembered as leading
        nowhere (those that found something, with what they found). The piece
        memo (piece_memo.py, in C where built) looks every piece up where it lies in the
        text; on a page of pieces seen before (most of them, on a school day) Python-level
        work is left only for the pieces never seen and the hot pairs still alive.
        """
        memo = self._pieces
        # Bounded memory: emptied when full, before a page (the C memo also adds the plain
        # pieces and pairs it judges itself, so this is checked whatever the page brings).
        if memo.pieces >= _CHUNK_CACHE:
            memo.clear()
        elif memo.pairs >= _START_CACHE:
            memo.clear_dead()
        unknown, alive, chunks = memo.scan(text)
        while unknown:  # pieces never seen: tokenise them and note whether they are hot
            self._learn_pieces(unknown)
            unknown, alive, chunks = memo.scan(text)
        if not alive:
            return set()
        hits = self._run_hits
        if len(hits) >= _START_CACHE:
            hits.clear()
        out: set[str] = set()
        found: list[_Hit] = []
        for c in alive:
            # A run found before with hits ("execution", "content" read as "consent"): its
            # categories, without the walk.
            known = hits.get(chunks[c])
            if known is not None:
                categories = next((k for run, k in known if run_at(chunks, c, run)), None)
                if categories is not None:
                    out |= categories
                    continue
            before = len(found)
            covered = self._walk_piece(chunks, c, found)
            if not covered:
                continue
            run = tuple(chunks[c : c + covered])
            if len(found) == before:
                memo.bury(*run)  # leads nowhere: the memo skips it from now on
            else:
                categories = frozenset(entry.category for _, _, entry in found[before:])
                hits.setdefault(run[0], []).append((run[1:], categories))
        return out | {entry.category for _, _, entry in found}

    def _piece_words(self, piece: str) -> tuple[str, ...]:
        """A piece's words, remembered (the memo judges plain cold pieces without them)."""
        cache = self._chunk_words
        words = cache.get(piece)
        if words is None:
            if len(cache) >= _CHUNK_CACHE:
                cache.clear()
            words = cache[piece] = tuple(TOKEN.findall(prepare(piece)))
        return words

    def _learn_pieces(self, pieces: list[str]) -> None:
        """Tokenise the pieces not seen before, and note which have a hot word."""
        learn = self._pieces.learn
        for piece in pieces:
            learn(piece, any([self._is_hot(w) for w in self._piece_words(piece)]))

    def _walk_piece(self, chunks: Sequence[str], c: int, found: list[_Hit]) -> int:
        """Run every walk from the hot words of piece c, adding what they find to `found`.

        Returns how many pieces from c on (2 to MAX_RUN) decided every walk, so that the run
        can be remembered with what it found, or 0 if it can't be: a walk went further, or
        the first word's walk was left to the same letter in the piece before.
        """
        starts, follow, words_of = self._starts, self._letters_follow, self._piece_words
        n = len(chunks)
        first = len(words_of(chunks[c]))
        before_words = words_of(chunks[c - 1]) if c else ()
        prev = word_tok(before_words[-1]) if before_words else None
        width = 3  # most walks die within three pieces; more are taken when one doesn't
        while True:
            end = min(n, c + width)
            local = list(itertools.chain.from_iterable(map(words_of, chunks[c:end])))
            complete = end == n
            toks = LazyToks(local)
            before, ended, skipped, overflow = len(found), -1, False, False
            for k in range(first):
                if not self._is_hot(local[k]):
                    continue
                tok = toks[k]
                w_states, letters, _ = starts.get(tok.raw) or self._start(tok)
                if w_states:
                    ended = max(ended, self._more_words(toks, k, w_states, found))
                if not letters:
                    continue
                earlier = toks[k - 1] if k else prev
                if tok.single and earlier is not None and tok.mkeys == earlier.mkeys:
                    # Walked from there (as in match). From the piece before: not remembered,
                    # as it depends on that piece.
                    skipped = skipped or k == 0
                    continue
                if k == len(local) - 1:  # no word follows in the pieces taken
                    overflow = overflow or not complete
                    ended = len(local)  # at the end of the text: not a memo either
                    continue
                nexts = follow.get(tok.raw)
                if nexts is None:
                    if len(follow) >= _START_CACHE:
                        follow.clear()
                    nexts = follow[tok.raw] = first_letters(letters)
                if any(key[:1] in nexts for key in toks[k + 1].mkeys):
                    ended = max(ended, self._more_letters(toks, k, letters, found))
                else:
                    ended = max(ended, k + 1)  # the next word ended it: the memo depends on it
            if (overflow or ended >= len(local)) and not complete:
                del found[before:]  # a walk went past the pieces taken: take more
                width *= 4
                continue
            if skipped or c + 1 >= n:
                return 0
            # The pieces the walks looked at: up to the one holding word `ended`.
            covered, words = 1, first
            while words <= ended and covered < MAX_RUN and c + covered < n:
                words += len(words_of(chunks[c + covered]))
                covered += 1
            return max(covered, 2) if words > ended else 0

    def _start(self, tok: Tok) -> _Start:
        """Where a word leads from the roots of the three indexes; remembered per spelling."""
        if len(self._starts) >= _START_CACHE:
            self._starts.clear()
        start: _Start = (
            [(nd, int(misspelt)) for nd, misspelt in self._words.step(tok)],
            walk_letters([(self._letters, "")], tok),
            [self._innocent.children[k] for k in tok.keys if k in self._innocent.children],
        )
        if not any(start):
            start = _NOWHERE
        self._starts[tok.raw] = start
        return start

    @staticmethod
    def _more_words(
        toks: Sequence[Tok], i: int, states: list[tuple[WordNode, int]], found: list[_Hit]
    ) -> int:
        """Phrases word by word from word i; a misspelt word counts where the phrase allows.

        Returns the word the walk ended at (len(toks): it was still going at the end).
        """
        j = i
        while states:
            for nd, misspelt in states:
                found.extend((i, j, e) for e, may in nd.entries if not misspelt & ~may)
            j += 1
            if j == len(toks):
                break
            bit = 1 << (j - i)
            nxt = {
                (id(c), misspelt | (bit if m else 0)): (c, misspelt | (bit if m else 0))
                for nd, misspelt in states
                if nd.children
                for c, m in nd.step(toks[j])
            }
            states = list(nxt.values())
        return j

    @staticmethod
    def _more_letters(
        toks: Sequence[Tok], i: int, states: list[LetterState], found: list[_Hit]
    ) -> int:
        """Phrases typed run together or split elsewhere: "kill my self", "s u i c i d e".

        Returns the word the walk ended at (len(toks): it was still going at the end).
        """
        single = toks[i].single
        for j in range(i + 1, len(toks)):
            states = walk_letters(states, toks[j])
            if not states:
                return j
            single = single and toks[j].single
            for nd, _ in states:
                if nd.entries and (nd.long or single):
                    found.extend((i, j, e) for e in nd.entries)
        return len(toks)

    @staticmethod
    def _innocent_end(toks: Sequence[Tok], i: int, states: list[WordNode]) -> int:
        """The last word of the longest innocent phrase starting at word i, or -1."""
        end, j = -1, i
        while states:
            if any(nd.entries for nd in states):
                end = j
            j += 1
            if j == len(toks):
                break
            states = [c for nd in states for c, _ in nd.step(toks[j], exact=True)]
        return end
