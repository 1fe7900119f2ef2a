"""Risk phrase libraries: reading and checking them, and the command that tries them out.

Libraries are YAML files a school can extend (the format is explained at the top of
`policies/phrases/en.yaml`); each mistake is a `PhraseError` with its file, line and field.
`compile_phrases` builds a matcher over phrases kept in another list format (the content
filter's weighted lists), checked the same way.

    .venv/bin/python -m proxy_addons.core.content.phrase_library policies/phrases/*.yaml \\
        --try "k1ll mys3lf"
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from proxy_addons.core.content.phrase_index import PhraseEntry
from proxy_addons.core.content.phrases import CATEGORIES, PhraseMatcher
from proxy_addons.core.content.words import Tok, normalise, phrase_key, skeleton, tokens
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, Where, load_located

log = logging.getLogger(__name__)

MAX_WORDS = 12  # a phrase longer than this is a sentence, not a phrase


class PhraseError(ValueError):
    """A mistake in a phrase library, with the file, line and field that need fixing."""

    def __init__(self, where: Where, field: str, message: str) -> None:
        super().__init__(f"{where}, {field}: {message}")
        self.file = where.file
        self.line = where.line
        self.field = field
        self.message = message


def load_libraries(paths: Sequence[Path]) -> PhraseMatcher:
    """Read and check phrase libraries; the same phrase twice keeps its highest severity."""
    entries: dict[tuple[str, str], tuple[Sequence[Tok], PhraseEntry]] = {}  # by letters
    for path in paths:
        for toks, entry in _read_library(Path(path)):
            key = (entry.category, skeleton("".join(phrase_key(t) for t in toks)))
            if key not in entries or entries[key][1].severity < entry.severity:
                entries[key] = (toks, entry)
    matcher = PhraseMatcher(list(entries.values()))
    for library, counts in matcher.sizes.items():
        log.info("phrase library %s: %d phrases", library, sum(counts.values()))
    return matcher


def compile_phrases(phrases: Iterable[tuple[str, str, Where, str]], library: str) -> PhraseMatcher:
    """A matcher over phrases kept in another list format (weighted_lists.py).

    Each item is (key, phrase, where, field); the phrase is checked as library phrases are
    (PhraseError names its file and line), normalised the same way, and a hit's `category`
    is the item's key, so the caller maps hits back to its own entries. Keys are the
    caller's, free of the risk categories; one key per distinct phrase keeps every phrase
    counted (a phrase inside a longer one of the same key is the only one dropped).
    """
    entries = [
        (_phrase_tokens(text, where, field), PhraseEntry(key, 1, text, library))
        for key, text, where, field in phrases
    ]
    return PhraseMatcher(entries)


_TOP_KEYS = ("name", "language", "categories", "innocent")


def _read_library(path: Path) -> list[tuple[list[Tok], PhraseEntry]]:
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
    out: list[tuple[list[Tok], PhraseEntry]] = []
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
                entry = PhraseEntry(category, int(level), text, name)
                out.append((_phrase_tokens(text, item_where, entry_field), entry))
    if "innocent" in doc:
        for text, item_where in _phrase_items(doc["innocent"], doc.at("innocent"), "innocent"):
            toks = _phrase_tokens(text, item_where, "innocent")
            out.append((toks, PhraseEntry("", 0, text, name)))
    return out


def _phrase_items(value: Any, where: Where, field: str) -> Iterator[tuple[str, Where]]:
    if not isinstance(value, LList) or not value:
        raise PhraseError(where, field, "should be a non-empty list of phrases")
    for k, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise PhraseError(value.at(k), field, f"{item!r} is not a phrase; put it in quotes")
        yield str(item).strip(), value.at(k)


def _phrase_tokens(text: str, where: Where, field: str) -> list[Tok]:
    toks = tokens(text)
    if not toks:
        raise PhraseError(where, field, f"'{text}' has no letters or digits")
    if len(toks) > MAX_WORDS:
        raise PhraseError(where, field, f"'{text}' is longer than {MAX_WORDS} words")
    if len(skeleton("".join(phrase_key(t) for t in toks))) < 3:
        raise PhraseError(where, field, f"'{text}' is too short to match safely")
    return toks


def main(argv: Sequence[str] | None = None) -> int:
    """Check libraries and show their sizes; with --try, show what some text matches."""
    parser = argparse.ArgumentParser(
        prog="python -m proxy_addons.core.content.phrase_library", description=main.__doc__
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
