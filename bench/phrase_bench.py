"""Speed of risk phrase matching: a 100 KB page of text, and single search terms.

Loads the shipped libraries (policies/phrases/en.yaml and pl.yaml), builds an English-like
page from a vocabulary of common words plus made-up rare ones, hides a few disguised
phrases in it, and prints milliseconds. Figures only; nothing here asserts.

    .venv/bin/python bench/phrase_bench.py [--kb 100] [--runs 5]

"first page" is a fresh matcher on words it has never seen (each new spelling is worked
out once and remembered); "same page again" and "another page" are what a running gateway
sees, as common words repeat from page to page; "all words new" is the worst case, a page
in which no word repeats.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy_addons.core.content.phrase_library import load_libraries  # noqa: E402

COMMON = (
    "the of and to a in is you that it he was for on are as with his they i at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her would "
    "make like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part school "
    "class teacher pupils lesson homework science history river volcano plant animal energy "
    "ocean climate map music football maths reading writing story poem light sound earth space"
).split()
SYLLABLES = "ka ro mi na te so lu vi de pa zo ri fe ga bo ne tu la xi mo an el ok ur is ta".split()
DISGUISED = ["k1ll mys3lf", "s u i c i d e", "how 2 self-harm", "pr0 ana", "Chce sie zabic"]


def rare_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def page(rng: random.Random, kb: int, rare: float) -> str:
    """English-like text: mostly common words, `rare` of them made up, some punctuation."""
    out: list[str] = []
    size = 0
    while size < kb * 1000:
        word = rare_word(rng) if rng.random() < rare else rng.choice(COMMON)
        if rng.random() < 0.08:
            word += rng.choice([".", ",", "!", "?", ":"])
        if rng.random() < 0.0005:
            word = rng.choice(DISGUISED)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[: kb * 1000]


def unique_page(kb: int) -> str:
    """No word twice: the worst case for the per-word memory."""
    out, size, n = [], 0, 0
    while size < kb * 1000:
        word = "".join(SYLLABLES[(n // len(SYLLABLES) ** k) % len(SYLLABLES)] for k in range(4))
        out.append(word)
        size, n = size + len(word) + 1, n + 1
    return " ".join(out)[: kb * 1000]


def ms(fn: object, *args: object, runs: int = 1) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=100, help="page size in KB (default 100)")
    parser.add_argument("--runs", type=int, default=5, help="best of this many (default 5)")
    args = parser.parse_args()
    rng = random.Random(7)
    libraries = [
        ROOT / "policies" / "phrases" / "en.yaml",
        ROOT / "policies" / "phrases" / "pl.yaml",
    ]

    start = time.perf_counter()
    matcher = load_libraries(libraries)
    print(f"load {len(matcher)} phrases:        {(time.perf_counter() - start) * 1000:8.1f} ms")

    first, second = page(rng, args.kb, 0.05), page(rng, args.kb, 0.05)
    print(f"first page ({len(first) // 1000} KB):         {ms(matcher.match, first):8.1f} ms")
    print(f"same page again:            {ms(matcher.match, first, runs=args.runs):8.1f} ms")
    print(f"another page:               {ms(matcher.match, second):8.1f} ms")
    hits = matcher.match(first, max_hits=50)
    print(f"  hits on the first page: {sorted({h.phrase for h in hits})}")

    worst = unique_page(args.kb)
    fresh = load_libraries(libraries)
    print(f"all words new ({len(worst.split())} words): {ms(fresh.match, worst):8.1f} ms")

    terms = [" ".join(rng.choice(COMMON) for _ in range(rng.randint(1, 6))) for _ in range(10_000)]
    start = time.perf_counter()
    for term in terms:
        matcher.match(term)
    per_term = (time.perf_counter() - start) / len(terms) * 1000
    print(f"one search term:            {per_term:8.3f} ms")


if __name__ == "__main__":
    main()
