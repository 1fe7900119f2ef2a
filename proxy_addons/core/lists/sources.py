"""Readers for category lists: UT1/squidGuard folders, plain domain files, hosts files.

Every entry leaves here in the canonical form of `proxy_addons.core.hosts`, so the
index compares like with like. Lists are written by many hands: comments, CRLF,
stray whitespace and garbage lines are expected, so a bad entry is skipped,
counted and reported (file:line) rather than aborting the load. A list that
cannot be read at all raises `ListSourceError`: the gateway refuses to start
rather than filter with a list silently missing.

Over 400 lines: one short reader per list format (UT1 folder, domains, hosts, urls,
expressions), all sharing the line reading, the skip report and the fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple

from proxy_addons.core.hosts import HostError, HostKind, canonical_host, canonical_url_entry
from proxy_addons.core.url_keys import match_key

logger = logging.getLogger(__name__)

# Bump when the meaning of an entry changes, so cached indexes are rebuilt.
# 2: URL entries are stored as their match keys (url_keys.match_key).
FORMAT_VERSION = 2

SourceKind = Literal["ut1", "domains", "hosts", "urls"]
UT1_FILES = ("domains", "urls", "expressions")

# A domain line is taken as it stands when it is already canonical in a way that
# is cheap to recognise (canonical_host(line).name == line): only [a-z0-9_-] labels
# joined by single dots, no punycode ("xn--", which the parser must validate), and
# nothing a browser would read as an IPv4 number (a last character that is a digit,
# a label starting "0x"). One regular-expression pass in C finds the other lines,
# which go through canonical_host one by one; real lists are almost all clean, so
# a 5-million-line list loads in seconds. tests/core/test_listindex.py checks that this
# fast path gives exactly what canonical_host gives.
_LABELS = rb"[a-z0-9_-]++(?:\.[a-z0-9_-]++)*+(?<![0-9])"
_CLEAN = rb"(?!0x)(?![^\n]*xn--)(?![^\n]*\.0x)" + _LABELS
_CLEAN_LINE = re.compile(_CLEAN)
_OTHER_LINE = re.compile(rb"^(?!" + _CLEAN + rb"\n)[^\n]*\n", re.MULTILINE)
# The same for chunks without "xn--" or a label starting "0x" (1.5 times faster).
_OTHER_LINE_PLAIN = re.compile(rb"^(?!" + _LABELS + rb"\n)[^\n]*\n", re.MULTILINE)
_LDH_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789_-"
# A URL entry already its own match key: a clean host (as above), then non-empty path
# segments of characters WHATWG and match_key leave alone (no ';'), no "." or ".."
# segment, no trailing slash, no query.
_CLEAN_URL = re.compile(
    r"(?!0x)(?![^/]*xn--)(?![^/]*\.0x)(?!.*/\.\.?(?:/|$))"
    r"[a-z0-9_-]++(?:\.[a-z0-9_-]++)*+(?<![0-9])(?:/[A-Za-z0-9._~!$&'()*+,=:@-]++)*+"
)
_CHUNK_BYTES = 1 << 22
# Bypass canonical_host's LRU cache: millions of list entries would evict the
# request path's working set for nothing (each entry is seen once).
_canonical_host = canonical_host.__wrapped__

_LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)
_REPORT_FIRST = 5
_MOSTLY_BAD_MIN = 3  # this many unreadable entries, and more than the good ones: refused


class ListSourceError(Exception):
    """A list cannot be used at all; the message names the file and what to do."""


@dataclass(frozen=True)
class ListSource:
    """One list: a UT1 category folder, or a plain file of domains, hosts lines or URLs."""

    kind: SourceKind
    path: Path


@dataclass
class SkipReport:
    """Entries skipped while reading one file, with the first few for the log."""

    path: Path
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def skip(self, line_no: int, text: str, reason: str) -> None:
        self.count += 1
        if len(self.examples) < _REPORT_FIRST:
            self.examples.append(f"{self.path}:{line_no}: {text[:80]!r} ({reason})")

    def finish(self, kept: int) -> None:
        """Log what was skipped; refuse the file when most of it could not be understood.

        A list overwritten with garbage (a failed download, a damaged disk) must not replace
        the good one and open its category: the reload fails, the last good lists stay in
        force, and the failure is told (status, metrics, alert).
        """
        self.log()
        if self.count >= _MOSTLY_BAD_MIN and self.count > kept:
            raise ListSourceError(
                f"{self.path}: {self.count} of its {self.count + kept} entries could not be "
                f"understood, e.g. {self.examples[0]}; is it damaged, or not a list? The "
                "last good lists stay in force until it is fixed"
            )

    def log(self) -> None:
        if self.count:
            logger.warning(
                "%s: skipped %d entr%s that could not be understood, e.g. %s",
                self.path,
                self.count,
                "y" if self.count == 1 else "ies",
                "; ".join(self.examples),
            )


class DomainBatch(NamedTuple):
    """Canonical names (ASCII bytes) from one block of a list file."""

    names: list[bytes]
    single_label: bool  # some name has no dot (and is no IPv6 literal): TLDs must be probed


class _Skip(Exception):
    """One line that is not a usable entry (the reason is the message)."""


def source_files(src: ListSource) -> list[tuple[str, Path]]:
    """(what, file) pairs a source is read from; raises ListSourceError if it is unusable."""
    path = src.path
    if src.kind == "ut1":
        if not path.is_dir():
            if path.exists():
                raise ListSourceError(
                    f"{path} is a file, but a UT1 list is a category folder "
                    "(holding 'domains' and/or 'urls' files); check the path in the policy"
                )
            raise ListSourceError(f"the UT1 list folder {path} does not exist; check the path")
        files = [(name, path / name) for name in UT1_FILES if (path / name).exists()]
        for _, file in files:
            _regular(file)
        if not files:
            raise ListSourceError(
                f"the folder {path} has no 'domains', 'urls' or 'expressions' file, so it is "
                "not a UT1 category folder; check the path in the policy"
            )
        return files
    if src.kind not in ("domains", "hosts", "urls"):
        raise ListSourceError(f"{path}: unknown kind of list {src.kind!r}")
    if path.is_dir():
        raise ListSourceError(
            f"{path} is a folder, but a {src.kind} list is a single file; "
            "use kind 'ut1' for a UT1 category folder"
        )
    if not path.exists():
        raise ListSourceError(f"the {src.kind} list {path} does not exist; check the path")
    _regular(path)
    return [("urls" if src.kind == "urls" else "domains", path)]


def _regular(path: Path) -> None:
    """A list is a regular file: a device (/dev/zero), a pipe or a socket never ends and
    would fill the builder's memory."""
    if not path.is_file() and not path.is_dir():  # a folder is told as one when read
        raise ListSourceError(
            f"{path} is not a regular file (a device, pipe or socket?); a list must be a file"
        )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[BinaryIO]:
    """Open a list file, turning OS errors into sentences a technician can act on."""
    try:
        with open(path, "rb") as fh:
            yield fh
    except FileNotFoundError:
        raise ListSourceError(f"the list file {path} does not exist; check the path") from None
    except PermissionError:
        raise ListSourceError(
            f"the list file {path} cannot be read: permission denied for the gateway's user"
        ) from None
    except IsADirectoryError:
        raise ListSourceError(f"{path} is a folder, but a list file was expected") from None
    except OSError as exc:
        raise ListSourceError(f"the list file {path} cannot be read: {exc.strerror}") from None


def _chunks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines, each ending in LF; CRLF becomes LF."""
    with _reading(path) as fh:
        carry = b""
        while True:
            block = fh.read(_CHUNK_BYTES)
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n") + 1
            carry = block[cut:]
            if cut:
                yield _lf(block[:cut])
        if carry:
            yield _lf(carry + b"\n")


def _lf(chunk: bytes) -> bytes:
    return chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk


def _lines(path: Path) -> Iterator[list[str]]:
    """The file's lines in batches, decoded (bad UTF-8 becomes U+FFFD, then fails to parse)."""
    for chunk in _chunks(path):
        yield chunk.decode("utf-8", errors="replace").split("\n")[:-1]


def _domain(text: str) -> str | None:
    """A domain-list line as a canonical name; None for blanks and comments."""
    word = text.split("#", 1)[0].strip()
    if not word:
        return None
    if len(word.split()) > 1:
        raise _Skip("more than one word")
    if word.startswith("*."):
        word = word[2:]
    elif word.startswith("."):
        word = word[1:]
    if "*" in word:
        raise _Skip("wildcards other than a leading '*.' are not supported")
    try:
        host = _canonical_host(word)
    except HostError as exc:
        raise _Skip(str(exc)) from None
    return host.name


def _domain_file_batches(path: Path) -> Iterator[DomainBatch]:
    report = SkipReport(path)
    line_no = kept = 0
    for chunk in _chunks(path):
        batch = parse_domain_chunk(chunk, line_no, report)
        line_no += chunk.count(b"\n")
        kept += len(batch.names)
        yield batch
    report.finish(kept)


def parse_domain_chunk(chunk: bytes, line_no: int, report: SkipReport) -> DomainBatch:
    """Canonical names from whole lines (`chunk` ends in LF; line_no lines came before)."""
    names: list[bytes] = []
    single = False
    pos = 0
    plain = not (b"xn--" in chunk or b".0x" in chunk or b"\n0x" in chunk or chunk.startswith(b"0x"))
    for m in (_OTHER_LINE_PLAIN if plain else _OTHER_LINE).finditer(chunk):
        single = _take_clean(chunk[pos : m.start()], names) or single
        line_no += chunk.count(b"\n", pos, m.start()) + 1
        pos = m.end()
        text = m.group()[:-1].decode("utf-8", errors="replace")
        try:
            name = _domain(text)
        except _Skip as exc:
            report.skip(line_no, text, str(exc))
            continue
        if name is not None:
            names.append(name.encode())
            single = single or ("." not in name and ":" not in name)
    single = _take_clean(chunk[pos:], names) or single
    return DomainBatch(names, single)


def _take_clean(lines: bytes, names: list[bytes]) -> bool:
    """Append clean LF-terminated lines to `names`; True if one of them has no dot."""
    if not lines:
        return False
    part = lines.split(b"\n")
    part.pop()  # after the final LF
    names.extend(part)
    dots = lines.translate(None, _LDH_BYTES)  # only dots and LFs are left
    return dots.startswith(b"\n") or b"\n\n" in dots


def _hosts_file_batches(path: Path) -> Iterator[DomainBatch]:
    report = SkipReport(path)
    line_no = kept = 0
    for lines in _lines(path):
        names = list(_hosts_names(lines, line_no, report))
        single = any("." not in n and ":" not in n for n in names)
        kept += len(names)
        yield DomainBatch([n.encode() for n in names], single)
        line_no += len(lines)
    report.finish(kept)


def _hosts_names(lines: list[str], line_no: int, report: SkipReport) -> Iterator[str]:
    for line in lines:
        line_no += 1
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            address = _canonical_host(words[0])
        except HostError:
            address = None
        if address is None or address.kind is HostKind.DOMAIN or len(words) < 2:
            report.skip(line_no, line, "not an 'address name...' hosts line")
            continue
        for word in words[1:]:
            if word.lower() in _LOCAL_NAMES:
                continue
            try:
                name = _domain(word)
            except _Skip as exc:
                report.skip(line_no, word, str(exc))
                continue
            if name is not None and name not in _LOCAL_NAMES:
                yield name


def url_entry(word: str) -> str:
    """A URL entry's match key, skipping the URL parser for entries already canonical."""
    return word if _CLEAN_URL.fullmatch(word) else match_key(canonical_url_entry(word))


def _read_url_file(path: Path) -> Iterator[str]:
    report = SkipReport(path)
    line_no = kept = 0
    for lines in _lines(path):
        for line in lines:
            line_no += 1
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) > 1 and not words[1].startswith("#"):
                report.skip(line_no, line, "more than one word")
                continue
            try:
                entry = url_entry(words[0])
            except ValueError as exc:  # HostError is a ValueError
                report.skip(line_no, line, str(exc))
                continue
            kept += 1
            yield entry
    report.finish(kept)


def domain_batches(src: ListSource) -> Iterator[DomainBatch]:
    """Canonical domain names as ASCII bytes, in batches: what the index builder hashes."""
    for what, path in source_files(src):
        if what == "domains":
            if src.kind == "hosts":
                yield from _hosts_file_batches(path)
            else:
                yield from _domain_file_batches(path)


def iter_domains(src: ListSource) -> Iterator[str]:
    """Canonical domain names (or IP literals) of a source; URLs lists have none."""
    for batch in domain_batches(src):
        for name in batch.names:
            yield name.decode()


def iter_urls(src: ListSource) -> Iterator[str]:
    """The match keys of a source's URL entries (UT1 `urls` files and urls lists)."""
    for what, path in source_files(src):
        if what == "urls":
            yield from _read_url_file(path)


def read_expressions(src: ListSource) -> list[str]:
    """The regular expressions of a UT1 folder, each checked to compile; others have none."""
    out: list[str] = []
    for what, path in source_files(src):
        if what != "expressions":
            continue
        report = SkipReport(path)
        line_no = 0
        for lines in _lines(path):
            for line in lines:
                line_no += 1
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                try:
                    compile_expression(text)
                except re.error as exc:
                    report.skip(line_no, text, f"not a regular expression: {exc}")
                    continue
                out.append(text)
        report.finish(len(out))
    return out


# squidGuard expressions are POSIX EREs; Python's re lacks their bracket classes.
_POSIX_CLASSES = {
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:space:]": r"\s",
    "[:punct:]": r"!-/:-@\[-`{-~",
    "[:xdigit:]": "0-9A-Fa-f",
}


def python_regex(expression: str) -> str:
    """A list expression (POSIX ERE) in Python's syntax: bracket classes translated."""
    for posix, python in _POSIX_CLASSES.items():
        expression = expression.replace(posix, python)
    return expression


def compile_expression(expression: str) -> re.Pattern[str]:
    """Compile a list expression case-insensitively (URLs differ in case, lists don't)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" noise
        return re.compile(python_regex(expression), re.IGNORECASE)


def fingerprint(srcs: Iterable[ListSource]) -> str:
    """A cheap identity of the sources' current contents: paths, sizes, mtimes, inodes.

    Equal fingerprints let a rebuilt index be reused without reading the lists.
    """
    parts: list[object] = [FORMAT_VERSION]
    for src in srcs:
        files = []
        for what, path in source_files(src):
            try:
                st = path.stat()
            except OSError as exc:
                raise ListSourceError(
                    f"the list file {path} cannot be read: {exc.strerror}"
                ) from None
            files.append([what, st.st_size, st.st_mtime_ns, st.st_ino])
        parts.append([src.kind, str(src.path.absolute()), files])
    blob = json.dumps(parts, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]
