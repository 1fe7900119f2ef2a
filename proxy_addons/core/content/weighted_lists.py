"""Weighted phrase lists, as e2guardian's weighted phrases work: reading them, and a page's score.

A weighted list (policies/phrases/weighted/*.yaml, format at the top of en.yaml) gives each
category phrases with weights, positive or negative, and combinations: phrases that score only
when all of them are on the page. As in e2guardian's default mode (weightedphrasemode = 2,
"singular"), each phrase and each combination counts once per page however often it appears,
so a long page repeating one mild word doesn't add up to a block. A page's score in a category
is the sum of the weights found; a profile blocks when any category it counts goes over its
threshold (e2guardian's naughtynesslimit).

Phrases are found by the risk-phrase matcher (`phrases.py`), so the same normalisation
applies: case, accents, leetspeak, spaced-out letters, one wrong letter in long words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy_addons.core.content.phrase_library import PhraseError, compile_phrases
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.content.words import normalise
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, Where, load_located

log = logging.getLogger(__name__)

MAX_WEIGHT = 1000
TOP_PHRASES = 3  # phrases named in a verdict
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class _Use:
    category: str
    weight: int
    label: str  # the phrase, or "a + b" for a combination


@dataclass(frozen=True)
class _Combination:
    keys: frozenset[str]
    use: _Use


@dataclass(frozen=True)
class Score:
    """A page's scores: per category, and what made them."""

    totals: dict[str, int]
    found: dict[str, tuple[tuple[str, int], ...]]  # category -> (phrase, weight), largest first

    def over(self, threshold: int, categories: frozenset[str] = frozenset()) -> str | None:
        """The highest-scoring category (of `categories`; empty: all) over `threshold`."""
        best: tuple[int, str] | None = None
        for category, total in self.totals.items():
            if categories and category not in categories:
                continue
            if total > threshold and (best is None or (total, category) > best):
                best = (total, category)
        return best[1] if best else None

    def top(self, category: str, n: int = TOP_PHRASES) -> list[str]:
        """The phrases that added most to `category`'s score."""
        return [phrase for phrase, weight in self.found.get(category, ())[:n] if weight > 0]


class WeightedLists:
    """Weighted phrases and combinations by category; build with `load_weighted_lists`."""

    def __init__(
        self,
        matcher: PhraseMatcher | None,
        uses: dict[str, list[_Use]],
        combinations: list[_Combination],
        sources: tuple[Path, ...] = (),
    ) -> None:
        self._matcher = matcher
        self._uses = uses
        self._combinations = combinations
        self.sources = sources
        cats = {u.category for us in uses.values() for u in us}
        self.categories = frozenset(cats | {c.use.category for c in combinations})

    def __len__(self) -> int:
        return sum(len(us) for us in self._uses.values()) + len(self._combinations)

    def find(self, text: str) -> set[str]:
        """The keys of the distinct phrases in `text`."""
        if self._matcher is None or not text:
            return set()
        return self._matcher.categories_in(text)

    def score(self, keys: Iterable[str]) -> Score:
        """Sum the weights of the phrases found (each once) and the combinations complete."""
        found = set(keys)
        totals: dict[str, int] = {}
        parts: dict[str, list[tuple[str, int]]] = {}
        for key in found:
            for use in self._uses.get(key, ()):
                totals[use.category] = totals.get(use.category, 0) + use.weight
                parts.setdefault(use.category, []).append((use.label, use.weight))
        for combination in self._combinations:
            if combination.keys <= found:
                use = combination.use
                totals[use.category] = totals.get(use.category, 0) + use.weight
                parts.setdefault(use.category, []).append((use.label, use.weight))
        ranked = {c: tuple(sorted(p, key=lambda pw: (-pw[1], pw[0]))) for c, p in parts.items()}
        return Score(totals, ranked)

    def score_text(self, text: str) -> Score:
        return self.score(self.find(text))


def load_weighted_lists(paths: Sequence[Path]) -> WeightedLists:
    """Read and check weighted lists; a mistake raises PhraseError with its file and line."""
    keys: dict[str, str] = {}  # normalised phrase -> key
    texts: list[tuple[str, str, Where, str]] = []
    uses: dict[str, list[_Use]] = {}
    combinations: list[_Combination] = []
    seen: dict[tuple[str, str], Where] = {}  # (category, normalised phrase) -> first place

    def key_for(text: str, where: Where, field_name: str) -> str:
        norm = normalise(text)
        if not norm:
            raise PhraseError(where, field_name, f"'{text}' has no letters or digits")
        if norm not in keys:
            keys[norm] = f"w{len(keys)}"
            texts.append((keys[norm], text, where, field_name))
        return keys[norm]

    for path in paths:
        for category, text, weight, where, field_name in _read_phrases(Path(path)):
            norm = normalise(text)
            if (category, norm) in seen:
                first = seen[(category, norm)]
                raise PhraseError(where, field_name, f"'{text}' is already listed ({first})")
            key = key_for(text, where, field_name)
            seen[(category, norm)] = where
            uses.setdefault(key, []).append(_Use(category, weight, text))
        for category, parts, weight, _where, field_name in _read_combinations(Path(path)):
            part_keys = frozenset(key_for(p, w, field_name) for p, w in parts)
            label = " + ".join(p for p, _ in parts)
            combinations.append(_Combination(part_keys, _Use(category, weight, label)))
    matcher = compile_phrases(texts, "weighted") if texts else None
    lists = WeightedLists(matcher, uses, combinations, tuple(Path(p) for p in paths))
    log.info("weighted phrase lists: %d phrases and combinations", len(lists))
    return lists


_TOP_KEYS = ("name", "language", "categories")
_CATEGORY_KEYS = ("phrases", "combinations")


def _document(path: Path) -> LMap:
    try:
        doc = load_located(path)
    except PolicySyntaxError as exc:
        raise PhraseError(exc.where, "file", exc.message) from exc
    if not isinstance(doc, LMap):
        raise PhraseError(Where(str(path), 1), "file", "a weighted list is 'key: value' settings")
    for key in doc:
        if key not in _TOP_KEYS:
            raise PhraseError(doc.at(key), key, f"not a setting; expected {', '.join(_TOP_KEYS)}")
    categories = doc.get("categories")
    if not isinstance(categories, LMap) or not categories:
        where = doc.at("categories") if "categories" in doc else Where(str(path), 1)
        raise PhraseError(where, "categories", "should name categories, each with phrases")
    for category, body in categories.items():
        field_name = f"categories.{category}"
        if not _CATEGORY.fullmatch(category):
            raise PhraseError(
                categories.at(category),
                field_name,
                "a category name is lower-case letters, digits and _",
            )
        if not isinstance(body, LMap) or not body:
            raise PhraseError(
                categories.at(category), field_name, "should have 'phrases' and/or 'combinations'"
            )
        for key in body:
            if key not in _CATEGORY_KEYS:
                raise PhraseError(
                    body.at(key), f"{field_name}.{key}", "expected 'phrases' or 'combinations'"
                )
    return doc


def _weight(value: Any, where: Where, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        raise PhraseError(where, field_name, f"a weight is a whole number, not {value!r}")
    if abs(value) > MAX_WEIGHT:
        raise PhraseError(where, field_name, f"a weight is between -{MAX_WEIGHT} and {MAX_WEIGHT}")
    return value


def _phrase_text(value: Any, where: Where, field_name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise PhraseError(where, field_name, f"{value!r} is not a phrase; put it in quotes")
    return str(value).strip()


def _read_phrases(path: Path) -> Iterator[tuple[str, str, int, Where, str]]:
    categories = _document(path)["categories"]
    for category, body in categories.items():
        phrases = body.get("phrases")
        if phrases is None:
            continue
        field_name = f"categories.{category}.phrases"
        if not isinstance(phrases, LMap) or not phrases:
            raise PhraseError(body.at("phrases"), field_name, "should map phrases to weights")
        for text, weight in phrases.items():
            where = phrases.at(text)
            phrase = _phrase_text(text, where, field_name)
            yield (
                category,
                phrase,
                _weight(weight, where, f"{field_name}.{phrase}"),
                where,
                field_name,
            )


def _read_combinations(
    path: Path,
) -> Iterator[tuple[str, list[tuple[str, Where]], int, Where, str]]:
    categories = _document(path)["categories"]
    for category, body in categories.items():
        combos = body.get("combinations")
        if combos is None:
            continue
        field_name = f"categories.{category}.combinations"
        if not isinstance(combos, LList) or not combos:
            raise PhraseError(body.at("combinations"), field_name, "should be a list")
        for k, item in enumerate(combos):
            where = combos.at(k)
            if not isinstance(item, LMap) or set(item) != {"all", "weight"}:
                raise PhraseError(
                    where, field_name, "each is {all: [phrase, phrase, ...], weight: N}"
                )
            parts = item["all"]
            if not isinstance(parts, LList) or len(parts) < 2:
                raise PhraseError(item.at("all"), field_name, "'all' lists two or more phrases")
            texts = [
                (_phrase_text(p, parts.at(j), field_name), parts.at(j)) for j, p in enumerate(parts)
            ]
            yield (
                category,
                texts,
                _weight(item["weight"], item.at("weight"), field_name),
                where,
                (field_name),
            )
