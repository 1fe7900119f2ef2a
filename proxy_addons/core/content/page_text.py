"""What the content filter reads of a response: which types, how decoded, the words one sees.

Bodies are decoded as sent (gzip, deflate, br, zstd; stacked encodings too, never beyond a
limit, so a small gzip that decodes to gigabytes stops at the cap). HTML is reduced to its
visible text (no scripts, styles or comments), JSON to its strings, server-sent events
(generative-AI answers) to the text of their deltas, a piece at a time as it arrives.
"""

from __future__ import annotations

import codecs
import html
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any, Protocol

# Optional: installed with mitmproxy, not dependencies of the core. Without one, a body in its
# encoding cannot be read, and a body that cannot be read is blocked (content_filter.py).
try:
    import brotli
except ImportError:
    brotli = None
try:
    from backports.zstd import ZstdDecompressor
except ImportError:
    ZstdDecompressor = None  # type: ignore[assignment,misc]


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
        if brotli is None:
            raise ImportError("brotli is not installed: a br body cannot be read")
        self._d = brotli.Decompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        if limit < 0:
            return bytes(self._d.process(data))
        return bytes(self._d.process(data, output_buffer_limit=limit))[:limit]


class _Zstd:
    def __init__(self) -> None:
        if ZstdDecompressor is None:
            raise ImportError("backports.zstd is not installed: a zstd body cannot be read")
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
