"""The phrase matcher's indexes: a word trie, a letter trie for phrases typed run together or
spaced out, and how a text word steps through them (exactly, either reading of 1 and |, or
with one letter wrong in a long word). Built once per library set by `phrases.PhraseMatcher`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy_addons.core.content.words import TEXT_SPEAK, Tok, merged

# Words this long (in letters, repeats collapsed) tolerate one typing mistake; a phrase of one
# word needs more, as no other word confirms it ("casing" is not "casino").
FUZZY_MIN = 6
FUZZY_ALONE_MIN = 7
COMPOUND_MIN = 7  # phrases this long may be typed run together or split at other places


@dataclass(frozen=True, eq=False)
class PhraseEntry:
    category: str  # "" for an innocent phrase
    severity: int
    phrase: str
    library: str


class WordNode:
    """A word trie: phrases indexed word by word, first word at the root."""

    __slots__ = ("children", "entries", "fuzzy", "merged", "tolerant")

    def __init__(self) -> None:
        self.children: dict[str, WordNode] = {}
        # Each with a bit for every word that may be misspelt.
        self.entries: list[tuple[PhraseEntry, int]] = []
        self.tolerant: set[str] = set()  # child keys that may be misspelt
        self.fuzzy: dict[tuple[str, int], list[str]] = {}  # tolerant keys by first letter, length
        self.merged: dict[str, list[str]] = {}  # i/l-merged child key -> child keys

    def insert(self, words: Sequence[str], entry: PhraseEntry, *, tolerant: bool) -> None:
        least = FUZZY_MIN if len(words) > 1 else FUZZY_ALONE_MIN
        node, may_misspell = self, 0
        for k, word in enumerate(words):
            if tolerant and len(word) >= least and word.isalpha():
                node.tolerant.add(word)
                may_misspell |= 1 << k
            node = node.children.setdefault(word, WordNode())
        node.entries.append((entry, may_misspell))

    def finish(self) -> None:
        """Build the look-up aids below this node, once all phrases are in."""
        for key, child in self.children.items():
            self.merged.setdefault(merged(key), []).append(key)
            if key in self.tolerant:
                self.fuzzy.setdefault((key[0], len(key)), []).append(key)
            child.finish()

    def step(self, tok: Tok, *, exact: bool = False) -> list[tuple[WordNode, bool]]:
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


class LetterNode:
    """A letter trie over whole phrases with the spaces taken out, i and l merged."""

    __slots__ = ("children", "entries", "long")

    def __init__(self) -> None:
        self.children: dict[str, LetterNode] = {}
        self.entries: list[PhraseEntry] = []
        self.long = False  # at least COMPOUND_MIN letters: safe to match however split

    def insert(self, letters: str, entry: PhraseEntry, *, long: bool) -> None:
        node = self
        for ch in letters:
            node = node.children.setdefault(ch, LetterNode())
        node.entries.append(entry)
        node.long = node.long or long


def run_at(chunks: Sequence[str], c: int, rest: tuple[str, ...]) -> bool:
    """Do the pieces after piece c begin with `rest`?"""
    return c + len(rest) < len(chunks) and all(
        chunks[c + 1 + k] == piece for k, piece in enumerate(rest)
    )


def one_left_out(word: str) -> list[str]:
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


LetterState = tuple[LetterNode, str]  # node, last letter


def first_letters(states: Iterable[LetterState]) -> frozenset[str]:
    """The letters a next word may start with to carry these letter-trie walks on.

    A letter equal to the last one is skipped by `walk_letters`, so it carries a walk too.
    """
    out: set[str] = set()
    for node, prev in states:
        out.update(node.children)
        if prev:
            out.add(prev)
    return frozenset(out)


def walk_letters(states: Iterable[LetterState], tok: Tok) -> list[LetterState]:
    """Continue letter-trie walks through one more word; repeats across words collapse."""
    out: dict[tuple[int, str], LetterState] = {}
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


def piece_index(words: WordNode, letters: LetterNode, innocent: WordNode) -> dict[str, list[str]]:
    """What the indexes start with, for the piece memo to judge plain words by itself
    (piece_memo.py, `index`): a word one letter off a key is, or has a letter whose
    removal makes, the key or the key with a letter left out, so misspellings are
    looked up rather than walked."""
    paths: list[str] = []
    todo = [("", letters)]
    while todo:
        path, letter = todo.pop()
        for ch, child in letter.children.items():
            paths.append(path + ch)
            todo.append((path + ch, child))
    root = words
    ends = {w for w, node in root.children.items() if node.entries}
    second = {f"{w} {k}" for w, node in root.children.items() for k in node.children}
    second_near = {
        f"{w} {k}"
        for w, node in root.children.items()
        for key in node.tolerant
        for k in one_left_out(key)
    }
    # A text word may be a misspelling of a first word that may be misspelt: one with
    # the same first letter and a length one off at most. Such words' phrases are also
    # filed under the first letter and length ("o6*" for "online").
    for w in root.tolerant:
        first, tag = root.children[w], f"{w[0]}{len(w)}*"
        if first.entries:
            ends.add(tag)
        second.update(f"{tag} {k}" for k in first.children)
        second_near.update(f"{tag} {k}" for key in first.tolerant for k in one_left_out(key))
    return {
        "paths": paths,
        "starts": [*root.children, *innocent.children],
        "near": sorted({k for key in root.tolerant for k in one_left_out(key)}),
        "special": list(TEXT_SPEAK),
        "firsts": list(root.children),
        "ends": sorted(ends),
        "second": sorted(second),
        "second_near": sorted(second_near),
    }
