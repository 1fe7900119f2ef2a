"""Risk phrase libraries, and the matcher that finds their phrases in search terms and page text.

A safeguarding lead needs to hear about a pupil searching "how to kill myself" however it is
typed: "k1ll mys3lf", "s u i c i d e", "KILL. MY. SELF", "suiiicide", "sucide". So phrases and
text go through the same normalisation and are compared word by word, never as substrings,
which keeps "skill myself", "grape" and "Scunthorpe" quiet. Libraries are YAML files a school
can extend; the format is explained at the top of `policies/phrases/en.yaml`.

Matching costs a few dictionary look-ups per word of text (phrases are indexed by word, and
by letters for run-together or spaced-out spellings), so a 100 KB page takes milliseconds.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, overload

from proxy_addons.core.content.piece_memo import MAX_RUN, PieceMemo
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, Where, load_located

log = logging.getLogger(__name__)

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
# Words this long (in letters, repeats collapsed) tolerate one typing mistake; a phrase of one
# word needs more, as no other word confirms it ("casing" is not "casino").
FUZZY_MIN = 6
FUZZY_ALONE_MIN = 7
COMPOUND_MIN = 7  # phrases this long may be typed run together or split at other places
MAX_WORDS = 12  # a phrase longer than this is a sentence, not a phrase
_MAX_ALTERNATIVES = 16  # spellings indexed per phrase (leet-free and as-written words)


@dataclass(frozen=True)
class PhraseHit:
    """One library phrase found in the text."""

    category: str
    severity: int  # 1 (weak sign) .. 5 (immediate risk)
    phrase: str  # as written in the library
    library: str  # the library's name
    matched: str  # the text that matched, normalised


class PhraseError(ValueError):
    """A mistake in a phrase library, with the file, line and field that need fixing."""

    def __init__(self, where: Where, field: str, message: str) -> None:
        super().__init__(f"{where}, {field}: {message}")
        self.file = where.file
        self.line = where.line
        self.field = field
        self.message = message


# --------------------------------------------------------------------------- normalisation

# Invisible characters used to break words up ("sui\u200bcide"); NFKC keeps them.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# Latin letters that do not decompose into letter + accent, and apostrophe look-alikes.
_FOLD = dict(zip("łđøħıŀŧð\u2019\u2018\u02bc\u02bb`", "ldohiltd'''''", strict=True))
_FOLD |= {"æ": "ae", "œ": "oe", "þ": "th"}
_FOLD_RE = re.compile(f"[{''.join(_FOLD)}]")
# Accents are dropped only after a Latin letter: Welsh ŵ and Polish ą are typed as w and a,
# but in other scripts the mark can be the vowel itself, or tell two letters apart (й, и).
_LATIN_MARKS = re.compile(r"(?<=[a-z])[\u0300-\u036f]+")
_APOSTROPHE = re.compile(r"(?<=[^\W_])'(?=[^\W_])")  # "don't" is typed "dont" as often
# A word: letters and digits, with leet symbols allowed where they cannot be punctuation
# ("$uicide", "k!ll", "pa$$", "jump off @ bridge"); "@name" is a handle, not "aname".
# Quantifiers are bounded so a page of "!!!!" stays linear.
_TOKEN = re.compile(r"(?:[$€][@$€]{0,2})?[^\W_]+(?:[@$€!|]{1,3}[^\W_]+)*[@$€]{0,3}|@(?![^\W_])")
_ASCII_LETTER = re.compile(r"[a-z]")
_WORD_NUMBER = re.compile(r"[^\W\d]+\d\d+")
# Cyrillic and Greek look-alikes, replaced only inside a word that also has Latin letters.
_CONFUSABLE = str.maketrans("авекмнорстухіјѕαεικνορτυχ", "abekmhopctyxijsaeikvoptux")
_LEET = str.maketrans("0345789@$€!", "oeastbgasei")
# 1 and | read as i or l; both readings are kept.
_FIRST_READING = str.maketrans({"1": "i", "|": "i"})
_SECOND_READING = str.maketrans({"1": "l", "|": "l"})
_SYMBOLS = str.maketrans(dict.fromkeys("@$€!|"))
_REPEATS = re.compile(r"(.)\1+")
_ELONGATED = re.compile(r"(.)\1\1+")
# Whole words of text-speak, read as the word they stand for as well as themselves.
_TEXT_SPEAK: dict[str, tuple[str, ...]] = {
    "u": ("you",),
    "ya": ("you",),
    "ur": ("your", "youre"),
    "r": ("are",),
    "y": ("why",),
    "n": ("and",),
    "2": ("to", "too"),
    "4": ("for",),
    "b4": ("before",),
    "pls": ("please",),
    "plz": ("please",),
    "cuz": ("because",),
    "coz": ("because",),
    "bc": ("because",),
    "ppl": ("people",),
    "h8": ("hate",),
    "ne1": ("anyone",),
    "every1": ("everyone",),
    "some1": ("someone",),
    "no1": ("noone",),
    "wud": ("would",),
    "cud": ("could",),
    "shud": ("should",),
    "luv": ("love",),
    "bf": ("boyfriend",),
    "gf": ("girlfriend",),
}


def _skeleton(word: str) -> str:
    """Repeated letters collapsed: "suiiicide" and "kil" compare as "suicide" and "kill" do."""
    return _REPEATS.sub(r"\1", word)


def _merged(key: str) -> str:
    """i and l made one letter, for words typed with 1 or | where either could be meant."""
    return _skeleton(key.replace("i", "|").replace("l", "|").replace("1", "|"))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class _Tok(NamedTuple):
    """A word of normalised text, with every spelling it is looked up under."""

    raw: str  # as found in the text
    text: str  # shown in `matched`
    plain: str  # as typed, without leet symbols
    keys: tuple[str, ...]  # skeletons: the leet readings, as typed, text-speak meanings
    mkeys: tuple[str, ...]  # the keys with i/l merged
    ambiguous: bool  # typed with 1 or |
    single: bool  # one character: maybe part of s p a c e d out letters


@functools.lru_cache(maxsize=32768)
def _token(found: str) -> _Tok:
    if found.isalpha() and found.isascii():  # most words: no leet, look-alikes or symbols
        key = _skeleton(found)
        keys: tuple[str, ...] = (key,)
        mkeys: tuple[str, ...] = (_merged(key),)
        if found in _TEXT_SPEAK:
            keys = _unique([key, *(_skeleton(w) for w in _TEXT_SPEAK[found])])
            mkeys = _unique(_merged(k) for k in keys)
        text = key if len(key) == len(found) else _ELONGATED.sub(r"\1", found)
        return _Tok(found, text, found, keys, mkeys, ambiguous=False, single=len(found) == 1)
    raw = found
    if not raw.isascii() and _ASCII_LETTER.search(raw):
        raw = raw.translate(_CONFUSABLE)
    plain = raw.translate(_SYMBOLS)
    if any(c.isalpha() for c in raw):
        leet = raw.translate(_LEET)
        first, second = leet.translate(_FIRST_READING), leet.translate(_SECOND_READING)
        readings = [first, second, plain]
        # "rule34", "covid19": a number after a word is a number, not leet, on show.
        text = _ELONGATED.sub(r"\1", plain if _WORD_NUMBER.fullmatch(plain) else first)
    else:  # a number, or "@"; short ones may be leet for a word ("17" for "it", "1$")
        leet = raw.translate(_LEET)
        first, second = leet.translate(_FIRST_READING), leet.translate(_SECOND_READING)
        readings, text = [plain], plain or first
        if len(raw) <= 4 and first.isalpha():
            readings += [first, second]
    speak = [_skeleton(w) for w in _TEXT_SPEAK.get(plain, ())]
    keys = _unique([_skeleton(r) for r in readings if r] + speak)
    return _Tok(
        raw=found,
        text=text,
        plain=plain,
        keys=keys,
        mkeys=_unique(_merged(k) for k in keys),
        ambiguous=first != second,
        single=len(raw) == 1,
    )


def _prepare(text: str) -> str:
    """NFKC, case-folded, accents off Latin letters, invisible characters and apostrophes out."""
    out = unicodedata.normalize("NFKC", text).casefold()
    if not out.isascii():
        out = unicodedata.normalize("NFD", _INVISIBLE.sub("", out))
        out = unicodedata.normalize("NFC", _LATIN_MARKS.sub("", out))
        out = _FOLD_RE.sub(lambda m: _FOLD[m.group()], out)
    return _APOSTROPHE.sub("", out)


# Longer "words" (base64, hashes, run-together paragraphs) are no phrase and are not kept.
_LONGEST_WORD = 64
_NOT_A_WORD = _Tok("", "", "", ("\0",), ("\0",), ambiguous=False, single=False)


def _tokens(text: str) -> list[_Tok]:
    return [
        _token(word) if len(word) <= _LONGEST_WORD else _NOT_A_WORD
        for word in _TOKEN.findall(_prepare(text))
    ]


def _shown(toks: Sequence[_Tok]) -> str:
    """Words joined by spaces, except spaced-out single letters, which are joined up again."""
    out: list[str] = []
    for k, tok in enumerate(toks):
        if out and not (tok.single and toks[k - 1].single):
            out.append(" ")
        out.append(tok.text)
    return "".join(out)


def normalise(text: str) -> str:
    """The normal form text is matched in: "K1ll. MY. S3LF" -> "kill my self"."""
    return _shown(_tokens(text))


def _phrase_key(tok: _Tok) -> str:
    """The one spelling a library word is indexed under (text-speak read as the word)."""
    speak = _TEXT_SPEAK.get(tok.plain)
    return _skeleton(speak[0]) if speak else tok.keys[0]


def _phrase_spellings(toks: Sequence[_Tok]) -> list[tuple[str, ...]]:
    """Spellings of a library phrase: as read, and as written where a word has digits."""
    options = [_unique([_phrase_key(t), _skeleton(t.plain)]) for t in toks]
    return list(itertools.islice(itertools.product(*options), _MAX_ALTERNATIVES))


# --------------------------------------------------------------------------- indexes


@dataclass(frozen=True, eq=False)
class _Entry:
    category: str  # "" for an innocent phrase
    severity: int
    phrase: str
    library: str


class _Node:
    """A word trie: phrases indexed word by word, first word at the root."""

    __slots__ = ("children", "entries", "fuzzy", "merged", "tolerant")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.entries: list[tuple[_Entry, int]] = []  # with the words that may be misspelt, bits
        self.tolerant: set[str] = set()  # child keys that may be misspelt
        self.fuzzy: dict[tuple[str, int], list[str]] = {}  # tolerant keys by first letter, length
        self.merged: dict[str, list[str]] = {}  # i/l-merged child key -> child keys

    def insert(self, words: Sequence[str], entry: _Entry, *, tolerant: bool) -> None:
        least = FUZZY_MIN if len(words) > 1 else FUZZY_ALONE_MIN
        node, may_misspell = self, 0
        for k, word in enumerate(words):
            if tolerant and len(word) >= least and word.isalpha():
                node.tolerant.add(word)
                may_misspell |= 1 << k
            node = node.children.setdefault(word, _Node())
        node.entries.append((entry, may_misspell))

    def finish(self) -> None:
        """Build the look-up aids below this node, once all phrases are in."""
        for key, child in self.children.items():
            self.merged.setdefault(_merged(key), []).append(key)
            if key in self.tolerant:
                self.fuzzy.setdefault((key[0], len(key)), []).append(key)
            child.finish()

    def step(self, tok: _Tok, *, exact: bool = False) -> list[tuple[_Node, bool]]:
        """The children a text word leads to, and whether it was misspelt on the way.

        Exactly, by either reading of 1 and |, or (unless `exact`) misspelt by one letter.
        """
        found = {k: False for k in tok.keys if k in self.children}
        if exact:
            return [(self.children[k], False) for k in found]
        if tok.ambiguous:
            for mkey in tok.mkeys:
                found.update(dict.fromkeys(self.merged.get(mkey, ()), False))
        key = tok.keys[0]
        if self.fuzzy and len(key) >= FUZZY_MIN and key.isalpha():
            # A misspelling keeps the first letter (people get that right), and either the
            # second letter or the last two: a cheap test before the exact one.
            for size in (len(key) - 1, len(key), len(key) + 1):
                for k in self.fuzzy.get((key[0], size), ()):
                    if (k[1] == key[1] or k[-2:] == key[-2:]) and k not in found:
                        if _misspelt(k, key):
                            found[k] = True
        return [(self.children[k], misspelt) for k, misspelt in found.items()]


class _CNode:
    """A letter trie over whole phrases with the spaces taken out, i and l merged."""

    __slots__ = ("children", "entries", "long")

    def __init__(self) -> None:
        self.children: dict[str, _CNode] = {}
        self.entries: list[_Entry] = []
        self.long = False  # at least COMPOUND_MIN letters: safe to match however split

    def insert(self, letters: str, entry: _Entry, *, long: bool) -> None:
        node = self
        for ch in letters:
            node = node.children.setdefault(ch, _CNode())
        node.entries.append(entry)
        node.long = node.long or long


def _run_at(chunks: Sequence[str], c: int, rest: tuple[str, ...]) -> bool:
    """Do the pieces after piece c begin with `rest`?"""
    return c + len(rest) < len(chunks) and all(
        chunks[c + 1 + k] == piece for k, piece in enumerate(rest)
    )


def _one_left_out(word: str) -> list[str]:
    """The word, and the word with each of its letters left out in turn."""
    return [word] + [word[:k] + word[k + 1 :] for k in range(len(word)) if len(word) > 1]


def _misspelt(word: str, typed: str) -> bool:
    """`typed` is `word` with one letter wrong, missing, extra or swapped with the next.

    Except the last letter wrong or missing: that usually makes another word ("county" and
    "counts", "heroin" and "heroic", "thinspo" and "thinsp"). An extra letter at the end
    ("suicides") is still the same word.
    """
    if len(word) == len(typed):
        diff = [k for k in range(len(word)) if word[k] != typed[k]]
        if len(diff) <= 1:
            return not diff or diff[0] != len(word) - 1
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and word[i] == typed[j] and word[j] == typed[i]
    longer, shorter = (word, typed) if len(word) > len(typed) else (typed, word)
    if len(longer) - len(shorter) != 1:
        return False
    k = 0
    while k < len(shorter) and longer[k] == shorter[k]:
        k += 1
    if longer is word and k == len(shorter):  # the last letter missing
        return False
    return longer[k + 1 :] == shorter[k:]


_CState = tuple[_CNode, str]  # node, last letter
_Start = tuple[list[tuple[_Node, int]], list[_CState], list[_Node]]
_Hit = tuple[int, int, "_Entry"]  # first word, last word, phrase
_START_CACHE = 50_000  # words remembered; common words repeat from page to page
_NOWHERE: _Start = ([], [], [])  # shared by the many words that start no phrase
_CHUNK_CACHE = 100_000  # text pieces remembered by categories_in


def _word_token(word: str) -> _Tok:
    return _token(word) if len(word) <= _LONGEST_WORD else _NOT_A_WORD


class _Lazy(Sequence[_Tok]):
    """A text's words, each made a _Tok (cached by `_token`) only when a walk looks at it."""

    __slots__ = ("_words",)

    def __init__(self, words: list[str]) -> None:
        self._words = words

    def __len__(self) -> int:
        return len(self._words)

    @overload
    def __getitem__(self, k: int) -> _Tok: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[_Tok]: ...
    def __getitem__(self, k: int | slice) -> _Tok | Sequence[_Tok]:
        if isinstance(k, slice):
            return [_word_token(w) for w in self._words[k]]
        return _word_token(self._words[k])


def _first_letters(states: Iterable[_CState]) -> frozenset[str]:
    """The letters a next word may start with to carry these letter-trie walks on.

    A letter equal to the last one is skipped by `_walk`, so it carries a walk too.
    """
    out: set[str] = set()
    for node, prev in states:
        out.update(node.children)
        if prev:
            out.add(prev)
    return frozenset(out)


def _walk(states: Iterable[_CState], tok: _Tok) -> list[_CState]:
    """Continue letter-trie walks through one more word; repeats across words collapse."""
    out: dict[tuple[int, str], _CState] = {}
    for node, prev in states:
        for mkey in tok.mkeys:
            nd, pv, ok = node, prev, True
            for ch in mkey:
                if ch == pv:
                    continue
                nxt = nd.children.get(ch)
                if nxt is None:
                    ok = False
                    break
                nd, pv = nxt, ch
            if not ok:
                continue
            out[(id(nd), pv)] = (nd, pv)
    return list(out.values())


# --------------------------------------------------------------------------- matcher


class PhraseMatcher:
    """Finds library phrases in text; build one with `load_libraries`."""

    def __init__(self, entries: Sequence[tuple[Sequence[_Tok], _Entry]]) -> None:
        self._words = _Node()
        self._letters = _CNode()
        self._innocent = _Node()
        self.sizes: dict[str, dict[str, int]] = {}  # library -> category -> phrases
        for toks, entry in entries:
            spellings = _phrase_spellings(toks)
            if not entry.category:
                for words in spellings:
                    self._innocent.insert(words, entry, tolerant=False)
                continue
            lib = self.sizes.setdefault(entry.library, dict.fromkeys(CATEGORIES, 0))
            lib[entry.category] = lib.get(entry.category, 0) + 1  # other keys: compile_phrases
            for words in spellings:
                self._words.insert(words, entry, tolerant=True)
                joined = _skeleton("".join(words))
                if len(words) > 1 and len(joined) >= FUZZY_MIN:  # "killmyself", "#endmylife"
                    self._words.insert((joined,), entry, tolerant=False)
                long = len(joined) >= COMPOUND_MIN
                self._letters.insert(_merged(joined), entry, long=long)
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
        self._pieces.index(**self._piece_index(), fuzzy_min=FUZZY_MIN)

    def __len__(self) -> int:
        return sum(sum(lib.values()) for lib in self.sizes.values())

    def _piece_index(self) -> dict[str, list[str]]:
        """What the indexes start with, for the piece memo to judge plain words by itself
        (piece_memo.py, `index`): a word one letter off a key is, or has a letter whose
        removal makes, the key or the key with a letter left out, so misspellings are
        looked up rather than walked."""
        paths: list[str] = []
        todo = [("", self._letters)]
        while todo:
            path, letter = todo.pop()
            for ch, child in letter.children.items():
                paths.append(path + ch)
                todo.append((path + ch, child))
        root = self._words
        ends = {w for w, node in root.children.items() if node.entries}
        second = {f"{w} {k}" for w, node in root.children.items() for k in node.children}
        second_near = {
            f"{w} {k}"
            for w, node in root.children.items()
            for key in node.tolerant
            for k in _one_left_out(key)
        }
        # A text word may be a misspelling of a first word that may be misspelt: one with
        # the same first letter and a length one off at most. Such words' phrases are also
        # filed under the first letter and length ("o6*" for "online").
        for w in root.tolerant:
            first, tag = root.children[w], f"{w[0]}{len(w)}*"
            if first.entries:
                ends.add(tag)
            second.update(f"{tag} {k}" for k in first.children)
            second_near.update(f"{tag} {k}" for key in first.tolerant for k in _one_left_out(key))
        return {
            "paths": paths,
            "starts": [*root.children, *self._innocent.children],
            "near": sorted({k for key in root.tolerant for k in _one_left_out(key)}),
            "special": list(_TEXT_SPEAK),
            "firsts": list(root.children),
            "ends": sorted(ends),
            "second": sorted(second),
            "second_near": sorted(second_near),
        }

    @staticmethod
    def normalise(text: str) -> str:
        """The normal form text is matched in (see the module function)."""
        return normalise(text)

    def match(self, text: str, *, max_hits: int = 20) -> list[PhraseHit]:
        """Library phrases in `text`, highest severity first, each phrase once."""
        toks = _tokens(text)
        if not toks or max_hits <= 0:
            return []
        found: list[tuple[int, int, _Entry]] = []
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
        first: dict[_Entry, tuple[int, int]] = {}
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
            PhraseHit(e.category, e.severity, e.phrase, e.library, _shown(toks[s : t + 1]))
            for e, (s, t) in kept[:max_hits]
        ]

    def categories_in(self, text: str) -> set[str]:
        """The categories of every phrase `match` would find in `text`, faster on long text.

        For page scanning (content_scoring.py and alerting), where a 100 KB page must cost
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
        toks = _Lazy(words)  # most words are never looked at as more than a string
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
                    nexts = follow[tok.raw] = _first_letters(letters)
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
        start = self._starts.get(word) or self._start(_word_token(word))
        (self._cold_words if start is _NOWHERE else self._hot_words).add(word)
        return start is not _NOWHERE

    def _categories_by_piece(self, text: str) -> set[str]:
        """`categories_in` for matchers without innocent phrases (content_scoring's lists).

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
                categories = next((k for run, k in known if _run_at(chunks, c, run)), None)
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
            words = cache[piece] = tuple(_TOKEN.findall(_prepare(piece)))
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
        prev = _word_token(before_words[-1]) if before_words else None
        width = 3  # most walks die within three pieces; more are taken when one doesn't
        while True:
            end = min(n, c + width)
            local = list(itertools.chain.from_iterable(map(words_of, chunks[c:end])))
            complete = end == n
            toks = _Lazy(local)
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
                    nexts = follow[tok.raw] = _first_letters(letters)
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

    def _start(self, tok: _Tok) -> _Start:
        """Where a word leads from the roots of the three indexes; remembered per spelling."""
        if len(self._starts) >= _START_CACHE:
            self._starts.clear()
        start: _Start = (
            [(nd, int(misspelt)) for nd, misspelt in self._words.step(tok)],
            _walk([(self._letters, "")], tok),
            [self._innocent.children[k] for k in tok.keys if k in self._innocent.children],
        )
        if not any(start):
            start = _NOWHERE
        self._starts[tok.raw] = start
        return start

    @staticmethod
    def _more_words(
        toks: Sequence[_Tok], i: int, states: list[tuple[_Node, int]], found: list[_Hit]
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
        toks: Sequence[_Tok], i: int, states: list[_CState], found: list[_Hit]
    ) -> int:
        """Phrases typed run together or split elsewhere: "kill my self", "s u i c i d e".

        Returns the word the walk ended at (len(toks): it was still going at the end).
        """
        single = toks[i].single
        for j in range(i + 1, len(toks)):
            states = _walk(states, toks[j])
            if not states:
                return j
            single = single and toks[j].single
            for nd, _ in states:
                if nd.entries and (nd.long or single):
                    found.extend((i, j, e) for e in nd.entries)
        return len(toks)

    @staticmethod
    def _innocent_end(toks: Sequence[_Tok], i: int, states: list[_Node]) -> int:
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


# --------------------------------------------------------------------------- loading


def load_libraries(paths: Sequence[Path]) -> PhraseMatcher:
    """Read and check phrase libraries; the same phrase twice keeps its highest severity."""
    entries: dict[tuple[str, str], tuple[Sequence[_Tok], _Entry]] = {}  # by letters
    for path in paths:
        for toks, entry in _read_library(Path(path)):
            key = (entry.category, _skeleton("".join(_phrase_key(t) for t in toks)))
            if key not in entries or entries[key][1].severity < entry.severity:
                entries[key] = (toks, entry)
    matcher = PhraseMatcher(list(entries.values()))
    for library, counts in matcher.sizes.items():
        log.info("phrase library %s: %d phrases", library, sum(counts.values()))
    return matcher


def compile_phrases(phrases: Iterable[tuple[str, str, Where, str]], library: str) -> PhraseMatcher:
    """A matcher over phrases kept in another list format (content_scoring's weighted lists).

    Each item is (key, phrase, where, field); the phrase is checked as library phrases are
    (PhraseError names its file and line), normalised the same way, and a hit's `category`
    is the item's key, so the caller maps hits back to its own entries. Keys are the
    caller's, free of the risk categories; one key per distinct phrase keeps every phrase
    counted (a phrase inside a longer one of the same key is the only one dropped).
    """
    entries = [
        (_phrase_tokens(text, where, field), _Entry(key, 1, text, library))
        for key, text, where, field in phrases
    ]
    return PhraseMatcher(entries)


_TOP_KEYS = ("name", "language", "categories", "innocent")


def _read_library(path: Path) -> list[tuple[list[_Tok], _Entry]]:
    try:
        doc = load_located(path)
    except PolicySyntaxError as exc:
        raise PhraseError(exc.where, "file", exc.message) from exc
    file_where = Where(str(path), 1)
    if not isinstance(doc, LMap):
        raise PhraseError(file_where, "file", "a phrase library is a set of 'key: value' settings")
    for key in doc:
        if key not in _TOP_KEYS:
            raise PhraseError(doc.at(key), key, f"not a setting; expected {', '.join(_TOP_KEYS)}")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise PhraseError(doc.at("name"), "name", "should be some text")
    name = name.strip()
    if "language" in doc and not isinstance(doc["language"], str):
        raise PhraseError(doc.at("language"), "language", "should be a code such as en or pl")
    categories = doc.get("categories")
    if not isinstance(categories, LMap):
        where = doc.at("categories") if "categories" in doc else file_where
        raise PhraseError(where, "categories", "should list categories, each with severities")
    out: list[tuple[list[_Tok], _Entry]] = []
    for category, levels in categories.items():
        field, where = f"categories.{category}", categories.at(category)
        if category not in CATEGORIES:
            raise PhraseError(where, field, f"unknown category; use one of {', '.join(CATEGORIES)}")
        if not isinstance(levels, LMap):
            raise PhraseError(where, field, "should map severities (1 to 5) to lists of phrases")
        for level, phrases in levels.items():
            where, entry_field = levels.at(level), f"{field}.{level}"
            if not (level.isdigit() and 1 <= int(level) <= 5):
                raise PhraseError(where, entry_field, "a severity is a whole number, 1 to 5")
            for text, item_where in _phrase_items(phrases, where, entry_field):
                entry = _Entry(category, int(level), text, name)
                out.append((_phrase_tokens(text, item_where, entry_field), entry))
    if "innocent" in doc:
        for text, item_where in _phrase_items(doc["innocent"], doc.at("innocent"), "innocent"):
            out.append((_phrase_tokens(text, item_where, "innocent"), _Entry("", 0, text, name)))
    return out


def _phrase_items(value: Any, where: Where, field: str) -> Iterator[tuple[str, Where]]:
    if not isinstance(value, LList) or not value:
        raise PhraseError(where, field, "should be a non-empty list of phrases")
    for k, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise PhraseError(value.at(k), field, f"{item!r} is not a phrase; put it in quotes")
        yield str(item).strip(), value.at(k)


def _phrase_tokens(text: str, where: Where, field: str) -> list[_Tok]:
    toks = _tokens(text)
    if not toks:
        raise PhraseError(where, field, f"'{text}' has no letters or digits")
    if len(toks) > MAX_WORDS:
        raise PhraseError(where, field, f"'{text}' is longer than {MAX_WORDS} words")
    if len(_skeleton("".join(_phrase_key(t) for t in toks))) < 3:
        raise PhraseError(where, field, f"'{text}' is too short to match safely")
    return toks


def main(argv: Sequence[str] | None = None) -> int:
    """Check libraries and show their sizes; with --try, show what some text matches."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m proxy_addons.core.content.phrases", description=main.__doc__
    )
    parser.add_argument("libraries", nargs="+", type=Path)
    parser.add_argument("--try", dest="text", action="append", default=[], metavar="TEXT")
    args = parser.parse_args(argv)
    try:
        matcher = load_libraries(args.libraries)
    except PhraseError as exc:
        print(exc)
        return 1
    for library, counts in matcher.sizes.items():
        listed = ", ".join(f"{c} {n}" for c, n in counts.items())
        print(f"{library}: {sum(counts.values())} phrases ({listed})")
    for text in args.text:
        print(f"{text!r} -> {normalise(text)!r}")
        for hit in matcher.match(text):
            found = f"'{hit.phrase}' ({hit.library}) as '{hit.matched}'"
            print(f"  {hit.severity} {hit.category}: {found}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
