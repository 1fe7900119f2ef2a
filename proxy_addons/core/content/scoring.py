"""Weighted phrase scoring of page content: one response scored as it arrives.

Pure, without mitmproxy: the content-filter add-on feeds it response bytes, and the tests and
`bench/` call exactly the same code. The lists and the score are `weighted_lists.py`; what is
read of a body (types, decoding, visible text) is `page_text.py`.

Text arrives in pieces (`ContentScanner.feed`). It is scored a segment at a time, each segment
starting with the end of the one before (`CARRY_CHARS`), so a phrase split across network
chunks or segments is still found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy_addons.core.content.page_text import TextExtractor, charset_of, kind_of
from proxy_addons.core.content.weighted_lists import Score, WeightedLists

SEGMENT_CHARS = 64_000  # text scored at a time
CARRY_CHARS = 400  # the end of one segment starts the next: longer than any phrase as typed


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
