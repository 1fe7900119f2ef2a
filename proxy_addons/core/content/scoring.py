"""Weighted phrase scoring of page content, as e2guardian's weighted phrases work.

Pure, without mitmproxy: the content-filter add-on feeds it response bytes, and the tests and
`bench/` call exactly the same code.

A weighted list (policies/phrases/weighted/*.yaml, format at the top of en.yaml) gives each
category phrases with weights, positive or negative, and combinations: phrases that score only
when all of them are on the page. As in e2guardian's default mode (weightedphrasemode = 2,
"singular"), each phrase and each combination counts once per page however often it appears,
so a long page repeating one mild word doesn't add up to a block. A page's score in a category
is the sum of the weights found; a profile blocks when any category it counts goes over its
threshold (e2guardian's naughtynesslimit).

Phrases are found by the risk-phrase matcher (`phrases.py`), so the same normalisation
applies: case, accents, leetspeak, spaced-out letters, one wrong letter in long words.

Text arrives in pieces (`ContentScanner.feed`): HTML is reduced to the words a person sees,
JSON to its strings, server-sent events (generative-AI answers) to the text of their deltas.
The text is scored a segment at a time, each segment starting with the end of the one before
(`CARRY_CHARS`), so a phrase split across network chunks or segments is still found.
"""

from __future__ import annotations

import codecs
import html
import json
import logging
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from proxy_addons.core.content.phrase_library import PhraseError, compile_phrases
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.content.words import normalise
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, Where, load_located

log = logging.getLogger(__name__)

MAX_WEIGHT = 1000
SEGMENT_CHARS = 64_000  # text scored at a time
CARRY_CHARS = 400  # the end of one segment starts the next: longer than any phrase as typed
TOP_PHRASES = 3  # phrases named in a verdict
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")


# --------------------------------------------------------------------------- the lists


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


# --------------------------------------------------------------------------- what is read


class Kind:
    """How a content type is read; None from `kind_of` means it is not scanned."""

    HTML = "html"
    TEXT = "text"
    JSON = "json"
    EVENTS = "events"  # text/event-stream


_KINDS = {
    "text/html": Kind.HTML,
    "application/xhtml+xml": Kind.HTML,
    "text/plain": Kind.TEXT,
    "text/markdown": Kind.TEXT,
    "application/json": Kind.JSON,
    "text/json": Kind.JSON,
    "application/x-ndjson": Kind.JSON,
    "application/jsonl": Kind.JSON,
    "text/event-stream": Kind.EVENTS,
}


def kind_of(content_type: str) -> str | None:
    """HTML, plain text, JSON or server-sent events; images, video, scripts, fonts, files: None."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in _KINDS:
        return _KINDS[mime]
    if mime.startswith("application/") and mime.endswith("+json"):
        return Kind.JSON
    return None


def charset_of(content_type: str) -> str:
    found = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.I)
    if found:
        try:
            return codecs.lookup(found.group(1)).name
        except LookupError:
            pass
    return "utf-8"


class _Decompressor(Protocol):
    def decompress(self, data: bytes, limit: int) -> bytes: ...


class _Zlib:
    """zlib's formats; "deflate" also as raw deflate, which servers send under that name too."""

    def __init__(self, wbits: int, raw_fallback: bool = False) -> None:
        self._d = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._raw_fallback:  # until the zlib header has been read, or refused
            try:
                out = self._d.decompress(data, max(limit, 0))
            except zlib.error:
                self._raw_fallback = False
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
            else:
                self._raw_fallback = not out
                return out
        return self._d.decompress(data, max(limit, 0))  # 0: no limit


class _Brotli:
    def __init__(self) -> None:
        import brotli

        self._d = brotli.Decompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        if limit < 0:
            return bytes(self._d.process(data))
        return bytes(self._d.process(data, output_buffer_limit=limit))[:limit]


class _Zstd:
    def __init__(self) -> None:
        from backports.zstd import ZstdDecompressor

        self._d = ZstdDecompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        return bytes(self._d.decompress(data, max_length=limit))


_CODINGS: dict[str, Any] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": lambda: _Zlib(zlib.MAX_WBITS, raw_fallback=True),
    "br": _Brotli,
    "zstd": _Zstd,
}


class Decoder:
    """Undoes Content-Encoding chunk by chunk: gzip, deflate, br, zstd, and stacks of them
    ("gzip, br": applied in the order listed, so undone from the last); identity passes.

    `decompress(data, limit)` gives at most `limit` bytes (a small compressed body can decode
    to gigabytes); what is cut off is never read: once cut, the decoder gives nothing more.
    """

    SUPPORTED = frozenset({"", "identity", *_CODINGS})

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding.strip().lower()
        names = [n.strip() for n in self.encoding.split(",")]
        names = [n for n in names if n not in ("", "identity")]
        unknown = [n for n in names if n not in _CODINGS]
        if unknown:
            raise ValueError(f"unsupported content encoding {encoding!r}")
        self._stages: list[_Decompressor] = [_CODINGS[n]() for n in reversed(names)]
        self.cut = False

    @classmethod
    def readable(cls, encoding: str) -> bool:
        try:
            cls(encoding)
        except ValueError:
            return False
        return True

    def decompress(self, data: bytes, limit: int = -1) -> bytes:
        if self.cut:
            return b""
        for stage in self._stages:
            if not data:
                return data
            data = stage.decompress(data, limit)
            if 0 <= limit <= len(data):  # what a stage holds back is lost to the next call
                self.cut = True
        if 0 <= limit < len(data):
            self.cut = True
            data = data[:limit]
        return data


_HIDDEN_OPEN = re.compile(r"<(script|style|noscript|template|svg)\b|<!--", re.I)
# A hidden element's contents up to its first closing tag, as `.*?</\1\s*>` would find it,
# but run through in C: possessive runs of anything but "<", and a "<" only where no closing
# tag starts (a lazy `.*?` steps a character at a time over a whole script or style sheet).
_HIDDEN_BODY = r"\b[^<]*+(?:<(?!/\1\s*>)[^<]*+)*+</\1\s*>"
_HIDDEN = re.compile(
    rf"<(script|style|noscript|template|svg){_HIDDEN_BODY}|<!--.*?-->", re.I | re.S
)
# What a person never sees, in one pass: hidden elements with their contents, comments, tags.
_UNSEEN = re.compile(
    rf"<(?:(script|style|noscript|template|svg){_HIDDEN_BODY}|!--.*?-->|[^>]*>)", re.I | re.S
)
_JSON_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|[nrtbf\"\\/])")
_ESCAPES = {"n": " ", "r": " ", "t": " ", "b": " ", "f": " ", '"': '"', "\\": "\\", "/": "/"}
# Keys whose string values carry a generative-AI answer's text, in the streaming formats of
# OpenAI (choices[].delta.content), ChatGPT's web app ("v"), Anthropic (delta.text), Google
# (parts[].text) and Microsoft Copilot ("text", "content").
_ANSWER_KEYS = frozenset(
    {"content", "text", "v", "delta", "value", "parts", "completion", "response", "answer"}
)
MAX_PENDING = 256_000  # an unclosed tag or script longer than this is read as text


def _unescape_json(match: re.Match[str]) -> str:
    code = match.group(1)
    return chr(int(code[1:], 16)) if code[0] == "u" else _ESCAPES[code]


def answer_text(data: Any) -> Iterator[str]:
    """The answer text in one event's JSON: string values under the answer keys, in order."""
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        item, wanted = stack.pop()
        if isinstance(item, str):
            if wanted:
                yield item
        elif isinstance(item, dict):  # {"delta": {"type": "text_delta", "text": ...}}
            stack.extend((v, k in _ANSWER_KEYS) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, wanted) for v in reversed(item))


def html_text(markup: str) -> str:
    """The text a person sees in HTML: no tags, comments, scripts, styles or templates.

    One C-level regex pass: an HTML parser in Python costs fifteen times as much a page.
    """
    visible = _UNSEEN.sub(" ", markup)
    return html.unescape(visible) if "&" in visible else visible


class TextExtractor:
    """The words in a piece of content, a chunk at a time (`feed`), the rest at `close`."""

    def __init__(self, kind: str, charset: str = "utf-8") -> None:
        self.kind = kind
        self._decode = codecs.getincrementaldecoder(charset)(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> str:
        return self._text(self._decode.decode(data), final=False)

    def close(self) -> str:
        return self._text(self._decode.decode(b"", final=True), final=True)

    def whole(self, data: bytes) -> str:
        """All of the content at once (a buffered body): nothing held back for a next chunk."""
        return self._text(self._decode.decode(data, final=True), final=True)

    def _text(self, new: str, *, final: bool) -> str:
        text = self._pending + new
        self._pending = ""
        if self.kind == Kind.HTML:
            return self._html(text, final)
        if self.kind == Kind.JSON:
            return _JSON_ESCAPE.sub(_unescape_json, text)
        if self.kind == Kind.EVENTS:
            return self._events(text, final)
        return text

    def _html(self, text: str, final: bool) -> str:
        if not final and len(text) < MAX_PENDING:
            cut = text.rfind(">") + 1
            opened = None
            for found in _HIDDEN_OPEN.finditer(text, 0, cut):
                opened = found
            if opened is not None:
                # An element whose contents are never shown, not yet closed: wait for its end.
                closed = _HIDDEN.match(text, opened.start(), cut)
                if closed is None:
                    cut = opened.start()
            self._pending, text = text[cut:], text[:cut]
        return html_text(text)

    def _events(self, text: str, final: bool) -> str:
        if not final:
            cut = text.rfind("\n") + 1
            if len(text) < MAX_PENDING:
                self._pending, text = text[cut:], text[:cut]
        out: list[str] = []
        for line in text.splitlines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if not data or data == "[DONE]":
                continue
            try:
                value = json.loads(data)
            except ValueError:
                out.append(data)  # plain-text events: the data is the text
                continue
            out.extend(answer_text(value))
        # Answers stream as fragments of words ("sui", "cide"): joined as sent.
        return "".join(out)


# --------------------------------------------------------------------------- scanning


@dataclass
class ContentScanner:
    """Scores one response as its content arrives; `finish` gives the page's score."""

    lists: WeightedLists
    kind: str
    charset: str = "utf-8"
    segment_chars: int = SEGMENT_CHARS
    found: set[str] = field(default_factory=set)
    scanned_bytes: int = 0
    _extractor: TextExtractor | None = None
    _text: list[str] = field(default_factory=list)
    _size: int = 0
    _carry: str = ""

    def __post_init__(self) -> None:
        self._extractor = TextExtractor(self.kind, self.charset)

    def feed(self, data: bytes) -> None:
        """More of the (decoded) body."""
        assert self._extractor is not None
        self.scanned_bytes += len(data)
        self._add(self._extractor.feed(data))

    def read(self, data: bytes) -> Score:
        """The whole (decoded) body at once: `feed` and `finish` in one, a little faster."""
        assert self._extractor is not None
        self.scanned_bytes += len(data)
        self._add(self._extractor.whole(data))
        return self.finish()

    def finish(self) -> Score:
        assert self._extractor is not None
        self._add(self._extractor.close())
        self._scan(final=True)
        return self.lists.score(self.found)

    def _add(self, text: str) -> None:
        if text:
            self._text.append(text)
            self._size += len(text)
            if self._size >= self.segment_chars:
                self._scan(final=False)

    def _scan(self, *, final: bool) -> None:
        text = self._carry + "".join(self._text)
        self._text, self._size = [], 0
        if not text or text.isspace():  # no copy of the text, as strip() would make
            return
        if not final:
            # The next segment starts with this one's end, cut at a space so no word is split.
            start = max(0, len(text) - CARRY_CHARS)
            space = text.find(" ", start)
            self._carry = text[space + 1 :] if space >= 0 else text[start:]
        self.found |= self.lists.find(text)


def score_body(lists: WeightedLists, body: bytes, content_type: str) -> Score | None:
    """Score a whole (decoded) body; None if its type is not scanned."""
    kind = kind_of(content_type)
    if kind is None:
        return None
    return ContentScanner(lists, kind, charset_of(content_type)).read(body)
