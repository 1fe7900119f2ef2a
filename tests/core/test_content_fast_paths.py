"""The faster ways of reading a page find exactly what the plain ways find.

Issue 7 part 4 made page scoring cheaper (bench/content_filter_bench.py): the hidden-element
patterns run through a script in C rather than a character at a time, a buffered body is read
in one go (`ContentScanner.read`), and `categories_in` looks pieces of text up all at once.
Each is checked here against the plain version on generated pages.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_addons.core.content import page_text
from proxy_addons.core.content.page_text import Kind
from proxy_addons.core.content.scoring import ContentScanner
from proxy_addons.core.content.weighted_lists import WeightedLists, load_weighted_lists

ROOT = Path(__file__).resolve().parents[2]
WEIGHTED = [ROOT / "policies" / "phrases" / "weighted" / f for f in ("en.yaml", "pl.yaml")]

# The patterns as first written (lazy `.*?`): the reference the fast ones must agree with.
_LAZY_HIDDEN = re.compile(
    r"<(script|style|noscript|template|svg)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S
)
_LAZY_UNSEEN = re.compile(
    r"<(?:(script|style|noscript|template|svg)\b.*?</\1\s*>|!--.*?-->|[^>]*>)", re.I | re.S
)

# Pieces of HTML that exercise the patterns: hidden elements in any case, closed or not,
# closing tags of other elements inside them, "<" in scripts, comments, entities, words.
_PIECES = [
    "<script>",
    "<SCRIPT type='x'>",
    "</script>",
    "</Script >",
    "</scriptx>",
    "<style>",
    "</style>",
    "<svg",
    "</svg>",
    "<noscript>",
    "</noscript>",
    "<template>",
    "</template>",
    "<scripts>",
    "<p>",
    "</p>",
    "<a href='x'>",
    "<!--",
    "-->",
    "<",
    ">",
    "/",
    "if (a < b) {}",
    "</",
    "&amp;",
    "&nbsp;",
    " ",
    "\n",
    "porn",
    "hardcore",
    "kill myself",
    "casino",
    "free",
]
html_text = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)


@given(html_text)
@settings(max_examples=400, deadline=None)
def test_hidden_patterns_match_as_the_lazy_ones_do(text: str) -> None:
    assert page_text._UNSEEN.sub(" ", text) == _LAZY_UNSEEN.sub(" ", text)
    for start in range(len(text)):
        fast = page_text._HIDDEN.match(text, start)
        lazy = _LAZY_HIDDEN.match(text, start)
        assert (fast and fast.span()) == (lazy and lazy.span())


def test_an_unclosed_script_is_read_as_the_lazy_pattern_reads_it() -> None:
    # No closing tag: the opening tag is dropped as a tag and the rest read as text.
    text = "<script>" + "if (a) { x = '<b>hardcore</b>'; }\n" * 20_000
    visible = page_text._UNSEEN.sub(" ", text)
    assert visible == _LAZY_UNSEEN.sub(" ", text)
    assert visible.startswith(" if (a) { x = ' hardcore ';")


@pytest.fixture(scope="module")
def lists() -> WeightedLists:
    return load_weighted_lists(WEIGHTED)


@given(html_text)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_reading_a_body_whole_scores_what_a_person_sees(lists: WeightedLists, text: str) -> None:
    """`read` (a buffered body at once) scores the text the lazy reference pattern leaves."""
    body = text.encode()
    visible = html.unescape(_LAZY_UNSEEN.sub(" ", text))
    scanner = ContentScanner(lists, Kind.HTML)
    assert scanner.read(body) == lists.score_text(visible)
    assert scanner.scanned_bytes == len(body)


def test_reading_a_well_formed_page_whole_is_feeding_it_in_chunks(lists: WeightedLists) -> None:
    page = (
        b"<html><head><style>.porn{}</style><script>if (a < b) { porn() }</script></head>"
        b"<body><p>Free</p><!-- online casino --><p>hard&shy;core p0rn</p>"
        b"<template>casino</template><p>online casino bonus</p></body></html>"
    )
    whole = ContentScanner(lists, Kind.HTML).read(page)
    for step in (1, 3, 7, 64):
        fed = ContentScanner(lists, Kind.HTML)
        for start in range(0, len(page), step):
            fed.feed(page[start : start + step])
        assert fed.finish() == whole
    assert whole.totals  # the page does score


@pytest.mark.parametrize("text", ["   \n ", "casino", " casino ", "online casino", "the"])
def test_whitespace_only_and_one_piece_texts(lists: WeightedLists, text: str) -> None:
    """No pieces, or one: the all-at-once look-up has nothing or a single key to take."""
    matcher = lists._matcher
    assert matcher is not None
    expected = {h.category for h in matcher.match(text, max_hits=10_000)}
    assert lists.find(text) == expected
