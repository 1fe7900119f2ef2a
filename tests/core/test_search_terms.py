"""Search terms from search engines' URLs, and query strings dropped from logged URLs."""

from __future__ import annotations

import pytest

from proxy_addons.core.search_terms import MAX_TERM, extract, log_url


@pytest.mark.parametrize(
    ("host", "path", "term"),
    [
        ("www.google.com", "/search?q=how+to+stay+safe&client=x", "how to stay safe"),
        ("www.google.co.uk", "/search?client=firefox&q=volcano%20facts", "volcano facts"),
        ("google.de", "/search?q=Vulkan&hl=de", "Vulkan"),
        ("www.google.com.au", "/search?q=koala", "koala"),
        ("www.google.com", "/search?q=cats&tbm=isch", "cats"),  # images
        ("www.google.com", "/search?q=election&tbm=nws", "election"),  # news
        ("news.google.com", "/search?q=weather&hl=en-GB", "weather"),
        ("www.bing.com", "/search?q=solar+system&form=QBLH", "solar system"),
        ("www.bing.com", "/images/search?q=puppies", "puppies"),
        ("duckduckgo.com", "/?q=rivers+of+europe&t=h_", "rivers of europe"),
        ("html.duckduckgo.com", "/html/?q=rainforest", "rainforest"),
        ("search.yahoo.com", "/search?p=tudor+kings&fr=yfp", "tudor kings"),
        ("uk.search.yahoo.com", "/search?p=castles", "castles"),
        ("www.ecosia.org", "/search?method=index&q=trees", "trees"),
        ("www.youtube.com", "/results?search_query=minecraft+tutorial", "minecraft tutorial"),
        ("m.youtube.com", "/results?search_query=fractions", "fractions"),
        ("en.wikipedia.org", "/wiki/Special:Search?search=Photosynthesis&go=Go", "Photosynthesis"),
        ("fr.wikipedia.org", "/w/index.php?search=Napol%C3%A9on&title=Sp%C3%A9cial", "Napoléon"),
        ("en.m.wikipedia.org", "/wiki/Special%3ASearch?search=ada+lovelace", "ada lovelace"),
    ],
)
def test_each_engine_gives_its_term(host: str, path: str, term: str) -> None:
    assert extract(host, path) == term


@pytest.mark.parametrize(
    ("path", "term"),
    [
        ("/search?q=%E2%9C%93+tick", "✓ tick"),  # UTF-8, percent-encoded
        ("/search?q=a%2Bb", "a+b"),  # an encoded plus is a plus, a bare one a space
        ("/search?q=++spaced++out++", "spaced out"),  # trimmed, runs of spaces folded
        ("/search?q=line%0Abreak", "line break"),  # no control characters in a log
        ("/search?q=%FF%FE", "\ufffd\ufffd"),  # not UTF-8: replaced, not an error
        ("/search?q=first&q=second", "first"),
    ],
)
def test_terms_are_decoded_and_tidied(path: str, term: str) -> None:
    assert extract("www.google.com", path) == term


def test_terms_are_capped() -> None:
    term = extract("www.bing.com", "/search?q=" + "x" * 500)
    assert term == "x" * MAX_TERM


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("www.google.com", "/"),
        ("www.google.com", "/search"),
        ("www.google.com", "/search?q="),
        ("www.google.com", "/search?q=+++"),
        ("www.google.com", "/complete/search?q=how+t&client=gws"),  # typing-ahead
        ("www.google.com", "/maps?q=london"),
        ("mail.google.com", "/search?q=x"),
        ("google.example.test", "/search?q=x"),
        ("notgoogle.com", "/search?q=x"),
        ("www.bing.com", "/?q=x"),
        ("links.duckduckgo.com", "/d.js?q=x&l=uk-en"),  # the results page's own API
        ("www.yahoo.com", "/search?p=x"),
        ("search.yahoo.com", "/search?q=x"),  # Yahoo's parameter is p
        ("www.youtube.com", "/watch?v=abc&search_query=x"),
        ("en.wikipedia.org", "/wiki/Volcano?search=x"),
        ("en.wikipedia.org", "/w/api.php?action=opensearch&search=vol"),
        ("wikipedia.org.example.test", "/w/index.php?search=x"),
        ("plain.test", "/search?q=x"),
    ],
)
def test_other_urls_are_not_searches(host: str, path: str) -> None:
    assert extract(host, path) is None


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        (
            "https://www.google.com/search?q=how+to+stay+safe&client=x",
            "https://www.google.com/search?q=how+to+stay+safe",
        ),
        (
            "https://www.youtube.com/results?sp=abc&search_query=caf%C3%A9#top",
            "https://www.youtube.com/results?search_query=caf%C3%A9",
        ),
        ("https://plain.test/hello?x=1&token=secret", "https://plain.test/hello"),
        ("http://plain.test:8080/a/b?x=1#frag", "http://plain.test:8080/a/b"),
        ("https://user:pass@plain.test/private", "https://plain.test/private"),
        ("https://www.google.com/search?client=x", "https://www.google.com/search"),
        ("https://[2001:db8::1]/x?y=1", "https://[2001:db8::1]/x"),
        ("https://plain.test/", "https://plain.test/"),
    ],
)
def test_logged_urls_keep_only_a_search_term(url: str, logged: str) -> None:
    assert log_url(url) == logged
