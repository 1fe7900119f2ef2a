"""Text as the phrase matcher reads it: words normalised, each with every spelling it may stand for.

A safeguarding lead needs to hear about "how to kill myself" however it is typed: "k1ll
mys3lf", "s u i c i d e", "KILL. MY. SELF", "suiiicide". Library phrases and text go through
this same normalisation (case, accents, invisible characters, look-alike letters, leetspeak,
text-speak, repeated letters), so the matcher (`phrases.py`) compares words, never substrings.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import NamedTuple, overload

_MAX_ALTERNATIVES = 16  # spellings indexed per phrase (leet-free and as-written words)

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
TOKEN = re.compile(r"(?:[$€][@$€]{0,2})?[^\W_]+(?:[@$€!|]{1,3}[^\W_]+)*[@$€]{0,3}|@(?![^\W_])")
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
TEXT_SPEAK: dict[str, tuple[str, ...]] = {
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


def skeleton(word: str) -> str:
    """Repeated letters collapsed: "suiiicide" and "kil" compare as "suicide" and "kill" do."""
    return _REPEATS.sub(r"\1", word)


def merged(key: str) -> str:
    """i and l made one letter, for words typed with 1 or | where either could be meant."""
    return skeleton(key.replace("i", "|").replace("l", "|").replace("1", "|"))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class Tok(NamedTuple):
    """A word of normalised text, with every spelling it is looked up under."""

    raw: str  # as found in the text
    text: str  # shown in `matched`
    plain: str  # as typed, without leet symbols
    keys: tuple[str, ...]  # skeletons: the leet readings, as typed, text-speak meanings
    mkeys: tuple[str, ...]  # the keys with i/l merged
    ambiguous: bool  # typed with 1 or |
    single: bool  # one character: maybe part of s p a c e d out letters


@functools.lru_cache(maxsize=32768)
def tok_of(found: str) -> Tok:
    if found.isalpha() and found.isascii():  # most words: no leet, look-alikes or symbols
        key = skeleton(found)
        keys: tuple[str, ...] = (key,)
        mkeys: tuple[str, ...] = (merged(key),)
        if found in TEXT_SPEAK:
            keys = _unique([key, *(skeleton(w) for w in TEXT_SPEAK[found])])
            mkeys = _unique(merged(k) for k in keys)
        text = key if len(key) == len(found) else _ELONGATED.sub(r"\1", found)
        return Tok(found, text, found, keys, mkeys, ambiguous=False, single=len(found) == 1)
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
    speak = [skeleton(w) for w in TEXT_SPEAK.get(plain, ())]
    keys = _unique([skeleton(r) for r in readings if r] + speak)
    return Tok(
        raw=found,
        text=text,
        plain=plain,
        keys=keys,
        mkeys=_unique(merged(k) for k in keys),
        ambiguous=first != second,
        single=len(raw) == 1,
    )


def prepare(text: str) -> str:
    """NFKC, case-folded, accents off Latin letters, invisible characters and apostrophes out."""
    out = unicodedata.normalize("NFKC", text).casefold()
    if not out.isascii():
        out = unicodedata.normalize("NFD", _INVISIBLE.sub("", out))
        out = unicodedata.normalize("NFC", _LATIN_MARKS.sub("", out))
        out = _FOLD_RE.sub(lambda m: _FOLD[m.group()], out)
    return _APOSTROPHE.sub("", out)


# Longer "words" (base64, hashes, run-together paragraphs) are no phrase and are not kept.
_LONGEST_WORD = 64
_NOT_A_WORD = Tok("", "", "", ("\0",), ("\0",), ambiguous=False, single=False)


def tokens(text: str) -> list[Tok]:
    return [
        tok_of(word) if len(word) <= _LONGEST_WORD else _NOT_A_WORD
        for word in TOKEN.findall(prepare(text))
    ]


def shown(toks: Sequence[Tok]) -> str:
    """Words joined by spaces, except spaced-out single letters, which are joined up again."""
    out: list[str] = []
    for k, tok in enumerate(toks):
        if out and not (tok.single and toks[k - 1].single):
            out.append(" ")
        out.append(tok.text)
    return "".join(out)


def normalise(text: str) -> str:
    """The normal form text is matched in: "K1ll. MY. S3LF" -> "kill my self"."""
    return shown(tokens(text))


def phrase_key(tok: Tok) -> str:
    """The one spelling a library word is indexed under (text-speak read as the word)."""
    speak = TEXT_SPEAK.get(tok.plain)
    return skeleton(speak[0]) if speak else tok.keys[0]


def phrase_spellings(toks: Sequence[Tok]) -> list[tuple[str, ...]]:
    """Spellings of a library phrase: as read, and as written where a word has digits."""
    options = [_unique([phrase_key(t), skeleton(t.plain)]) for t in toks]
    return list(itertools.islice(itertools.product(*options), _MAX_ALTERNATIVES))


def word_tok(word: str) -> Tok:
    return tok_of(word) if len(word) <= _LONGEST_WORD else _NOT_A_WORD


class LazyToks(Sequence[Tok]):
    """A text's words, each made a Tok (cached by `tok_of`) only when a walk looks at it."""

    __slots__ = ("_words",)

    def __init__(self, words: list[str]) -> None:
        self._words = words

    def __len__(self) -> int:
        return len(self._words)

    @overload
    def __getitem__(self, k: int) -> Tok: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[Tok]: ...
    def __getitem__(self, k: int | slice) -> Tok | Sequence[Tok]:
        if isinstance(k, slice):
            return [word_tok(w) for w in self._words[k]]
        return word_tok(self._words[k])
