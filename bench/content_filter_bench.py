"""What real-time content filtering adds to a 100 KB page's time through the gateway.

Two real mitmdump gateways with the same add-ons and the same policy (tests/data/policy plus
the shipped weighted lists), except that one scores pages (ks2 `content_filter: {threshold:
100}`) and the other doesn't, in front of one local upstream (tests/support/page_server.py)
serving a realistic 100 KB HTML page: styles, scripts, navigation and about half the bytes
visible English text, with nothing on it over the threshold (20 such pages, different
text, taken in turn, so the matcher's per-word memory works as on a school day, not on one
page learnt by heart). An httpx client that trusts the
gateways' CA fetches the page through each, alternating in rounds so that both see the same
load on this shared machine, over HTTPS (decrypted) and plain HTTP. Figures only; nothing
here asserts. Target: scanning adds at most 20%.

Wall-clock times on a machine shared with other work are noisy, so beside the medians it
prints the gateway processes' own CPU time per page (psutil), which other load doesn't
inflate, and the fastest quarter of the requests.

    .venv/bin/python bench/content_filter_bench.py [--requests 200] [--kb 100] [--new-words 0.03]
        [--upstream-ms 20] [--prose [FOLDER]]

By default every word of the pages comes from a vocabulary of ~190 words, which the matcher
has learnt after the first pages: its best case. `--new-words 0.03` makes 3% of the words
made-up names and rare words, new on each page, as on real pages; each new word costs the
matcher some microseconds the first time it is seen.

The test rig's upstream redirection (tests/support/local_upstream.py) makes mitmproxy open a
new upstream connection (and, for HTTPS, a TLS handshake) for every request, in both gateways
alike; the "direct" line is the page fetched from the upstream without a gateway.

`--prose` builds the pages from real English paragraphs (Debian's licence texts by default)
in an order of each page's own, and serves a page never served before for every request:
the paragraphs recur, as a site's vocabulary does, but every page is new to the gateway.

With the upstream on loopback answering at once, a page's time through the gateway is the
gateway's own CPU and nothing else: the worst case for the ratio. `--upstream-ms 20` makes
the upstream wait before answering, as a real site does (its server's time and the
school's round trip to it), to show the ratio a pupil would see.
"""

from __future__ import annotations

import argparse
import html
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from proxy_addons.core.content.piece_memo import native  # noqa: E402
from proxy_addons.core.content.scoring import score_body  # noqa: E402
from proxy_addons.core.content.weighted_lists import load_weighted_lists  # noqa: E402
from tests.conftest import (  # noqa: E402
    Gateway,
    Upstream,
    _self_signed,
    copy_policy,
    start_mitmdump,
)
from tests.support.page_server import Page, PageServer  # noqa: E402

WORDS = (
    "the of and to a in is you that it he was for on are as with his they i at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her would "
    "make like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part school "
    "class teacher pupils lesson homework science history river volcano plant animal energy "
    "ocean climate map music football maths reading writing story poem light sound earth space "
    "government parliament election century empire revolution industry railway factory coal "
    "photosynthesis chlorophyll molecule electricity magnet gravity orbit planet telescope"
).split()


SYLLABLES = "ka ro mi na te so lu vi de pa zo ri fe ga bo ne tu la xi mo an el ok ur is".split()


def new_word(rng: random.Random) -> str:
    """A made-up word (a name, a rare word): most are new to the matcher on every page."""
    word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
    return word.capitalize() if rng.random() < 0.3 else word


def sentence(rng: random.Random, new_words: float = 0.0) -> str:
    words = [
        new_word(rng) if new_words and rng.random() < new_words else rng.choice(WORDS)
        for _ in range(rng.randint(8, 20))
    ]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def page(kb: int, seed: int = 7, new_words: float = 0.0) -> bytes:
    """A news-or-encyclopedia-like page of `kb` KB, about half of it visible text.

    `new_words`: the share of its words made up, so never seen on an earlier page.
    """
    rng = random.Random(seed)
    css = "".join(
        f".c{n} {{ margin: {n % 9}px; color: #{n * 7919 % 0xFFFFFF:06x}; display: block }}\n"
        for n in range(300)
    )
    js = "".join(
        f"function f{n}(a, b) {{ return a * {n} + b; }} window.f{n} = f{n};\n" for n in range(250)
    )
    nav = "".join(
        f'<li class="c{n % 300}"><a href="/section/{n}/item-{n * 3}">{rng.choice(WORDS)} '
        f"{rng.choice(WORDS)}</a></li>\n"
        for n in range(150)
    )
    head = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>An article</title>'
        f"<style>{css}</style><script>{js}</script></head><body><nav><ul>{nav}</ul></nav>"
        '<main><article class="c1">'
    )
    tail = "</article></main><footer><p>Copyright and contact details.</p></footer></body></html>"
    out = [head]
    size = len(head) + len(tail)
    while size < kb * 1000:
        para = f'<p class="c{rng.randrange(300)}">' + " ".join(
            sentence(rng, new_words) for _ in range(5)
        )
        para += "</p>\n"
        out.append(para)
        size += len(para)
    body = ("".join(out)[: kb * 1000 - len(tail)] + tail).encode()
    return body


def prose_paragraphs(folder: Path) -> list[str]:
    """The paragraphs of real English prose: Debian's licence texts (base-files), on every
    Debian machine. Legal English, but English as people write it, with its whole
    vocabulary, not a list of words."""
    out: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        out += [" ".join(p.split()) for p in text.split("\n\n") if len(p.split()) >= 8]
    if len(out) < 50:
        raise SystemExit(f"{folder}: too little prose for --prose pages")
    return out


def prose_page(kb: int, seed: int, paragraphs: list[str]) -> bytes:
    """A page of `kb` KB like `page`, its visible text real paragraphs in an order of its own.

    Each page's order is new, so the pairs of pieces where paragraphs meet are new; the
    paragraphs themselves recur from page to page, as a site's vocabulary does.
    """
    rng = random.Random(seed)
    shell = page(kb, seed).decode()
    head = shell[: shell.index('<article class="c1">') + len('<article class="c1">')]
    tail = shell[shell.rindex("</article>") :]  # page()'s own ending
    out, size = [head], len(head) + len(tail)
    while size < kb * 1000:
        text = html.escape(rng.choice(paragraphs), quote=False)
        para = f'<p class="c{rng.randrange(300)}">{text}</p>\n'
        out.append(para)
        size += len(para.encode())
    raw = "".join(out).encode()[: kb * 1000 - len(tail)].decode(errors="ignore")
    body = (raw + tail).encode()
    return body + b" " * (kb * 1000 - len(body))  # every page the same size: fetch checks it


def policy(tmp: Path, scanning: bool) -> Path:
    path = copy_policy(tmp)
    import shutil

    shutil.copytree(ROOT / "policies" / "phrases" / "weighted", path.parent / "weighted")
    text = path.read_text()
    if scanning:
        text = text.replace(
            "  ks2:\n    label: KS2\n    audience: learner\n",
            "  ks2:\n    label: KS2\n    audience: learner\n    content_filter: {threshold: 100}\n",
            1,
        )
    text += "content_filter:\n  lists: [weighted/en.yaml, weighted/pl.yaml]\n"
    path.write_text(text)
    return path


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds the gateway process has used (all its threads), whatever else runs."""
    t = proc.cpu_times()
    return float(t.user + t.system)


def _quartile(times: list[float]) -> float:
    """The first quartile: what a request costs when the shared machine lets it run."""
    return statistics.quantiles(times, n=4)[0]


def fetch(client: httpx.Client, url: str, size: int) -> float:
    start = time.perf_counter()
    r = client.get(url)
    took = time.perf_counter() - start
    if r.status_code != 200 or len(r.content) != size:
        raise SystemExit(f"unexpected answer: {r.status_code}, {len(r.content)} bytes")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per gateway and scheme")
    parser.add_argument("--kb", type=int, default=100)
    parser.add_argument("--pages", type=int, default=20, help="different pages, taken in turn")
    parser.add_argument(
        "--new-words",
        type=float,
        default=0.0,
        help="share of made-up words per page, new to the matcher (real pages bring names "
        "and rare words; default 0: all from a small vocabulary, learnt after a few pages)",
    )
    parser.add_argument(
        "--upstream-ms",
        type=float,
        default=0.0,
        help="the upstream waits this long before answering, as a real site's server and "
        "network do (default 0: loopback, no wait, the worst case for the ratio)",
    )
    parser.add_argument(
        "--prose",
        type=Path,
        nargs="?",
        const=Path("/usr/share/common-licenses"),
        metavar="FOLDER",
        help="pages of real English paragraphs (default folder: Debian's licence texts), "
        "and a page never served before for every request, not 20 taken in turn",
    )
    args = parser.parse_args()

    print(f"piece memo: {'C' if native() else 'Python (the C part is not built)'}")
    per_scheme = args.requests + 10  # warm-up included
    if args.prose:
        paragraphs = prose_paragraphs(args.prose)
        bodies = [prose_page(args.kb, seed, paragraphs) for seed in range(2 * per_scheme)]
        spare = [prose_page(args.kb, -seed, paragraphs) for seed in range(1, 13)]
    else:
        bodies = [page(args.kb, seed, args.new_words) for seed in range(args.pages)]
        spare = [page(args.kb, -seed, args.new_words) for seed in range(1, 13)]
    body = bodies[0]
    paths = [ROOT / "policies" / "phrases" / "weighted" / f for f in ("en.yaml", "pl.yaml")]
    lists = load_weighted_lists(paths)
    start = time.thread_time()
    score = score_body(lists, spare[0], "text/html")
    first = time.thread_time() - start
    news = []
    for other in spare[1:]:  # pages scored once each, in turn
        start = time.thread_time()
        score_body(lists, other, "text/html")
        news.append(time.thread_time() - start)
    best = float("inf")
    for _ in range(20):
        start = time.thread_time()
        score_body(lists, spare[0], "text/html")
        best = min(best, time.thread_time() - start)
    print(f"page: {len(body):,} bytes of HTML; its scores: {score.totals if score else None}")
    print("scoring in-process, CPU time:")
    print(f"  first page, every word new to the matcher:   {first * 1000:6.2f} ms")
    print(
        f"  a new page, each of the next {len(news)} (median):  "
        f"{statistics.median(news) * 1000:6.2f} ms (last {news[-1] * 1000:.2f} ms)"
    )
    print(f"  a page seen before (best of 20):             {best * 1000:6.2f} ms")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cert, key = _self_signed(tmp)
        delay = args.upstream_ms / 1000
        pages = {f"/article/{n}": Page(b, delay=delay) for n, b in enumerate(bodies)}
        server = PageServer(pages, cert, key)
        upstream = Upstream(server.http_port, server.https_port)
        gateways: dict[str, Gateway] = {}
        try:
            for name, scanning in (("off", False), ("on", True)):
                folder = tmp / name
                folder.mkdir()
                gateways[name] = start_mitmdump(
                    policy(folder, scanning), folder / "var", upstream, extra=["--quiet"]
                )
            for s, scheme in enumerate(("https", "http")):
                numbers = range(len(bodies))
                if args.prose:  # pages never served before, to either gateway
                    numbers = range(s * per_scheme, (s + 1) * per_scheme)
                urls = [f"{scheme}://news.test/article/{n}" for n in numbers]
                times: dict[str, list[float]] = {"off": [], "on": []}
                clients = {
                    name: httpx.Client(proxy=gw.proxy, verify=str(gw.ca), timeout=30)
                    for name, gw in gateways.items()
                }
                try:
                    for c in clients.values():  # warm up: CA, tunnels, caches
                        for n in range(10):
                            fetch(c, urls[-1 - n % len(urls)], len(body))
                    rounds = max(1, args.requests // 10)
                    procs = {n: psutil.Process(gw.process.pid) for n, gw in gateways.items()}
                    cpu = {n: 0.0 for n in gateways}
                    for r in range(rounds):
                        for name, c in clients.items():
                            before = _cpu(procs[name])
                            times[name] += [
                                fetch(c, urls[(r * 10 + k) % len(urls)], len(body))
                                for k in range(10)
                            ]
                            cpu[name] += _cpu(procs[name]) - before
                finally:
                    for c in clients.values():
                        c.close()
                direct_port = server.https_port if scheme == "https" else server.http_port
                with httpx.Client(verify=False, timeout=30) as c:
                    direct = [
                        fetch(c, f"{scheme}://127.0.0.1:{direct_port}/article/0", len(body))
                        for _ in range(50)
                    ]
                off, on = statistics.median(times["off"]), statistics.median(times["on"])
                waits = f", upstream answers after {args.upstream_ms:g} ms" if delay else ""
                print(
                    f"\n{scheme.upper()} ({len(times['on'])} requests per gateway, median{waits}):"
                )
                print(
                    f"  direct from the upstream:       {statistics.median(direct) * 1000:6.2f} ms"
                )
                print(f"  through the gateway, scan off:  {off * 1000:6.2f} ms")
                print(f"  through the gateway, scan on:   {on * 1000:6.2f} ms")
                print(
                    f"  overhead of scanning:           {(on - off) * 1000:6.2f} ms "
                    f"({(on / off - 1) * 100:+.1f}%; target at most +20%)"
                )
                n = len(times["on"])
                cpu_off, cpu_on = cpu["off"] / n, cpu["on"] / n
                print(
                    f"  gateway CPU per page:           off {cpu_off * 1000:.2f} ms, "
                    f"on {cpu_on * 1000:.2f} ms ({(cpu_on / cpu_off - 1) * 100:+.1f}%)"
                )
                q_off, q_on = _quartile(times["off"]), _quartile(times["on"])
                print(
                    f"  fastest quarter (less noise):   off {q_off * 1000:.2f} ms, "
                    f"on {q_on * 1000:.2f} ms ({(q_on / q_off - 1) * 100:+.1f}%)"
                )
                mean_off, mean_on = statistics.fmean(times["off"]), statistics.fmean(times["on"])
                print(
                    f"  (means: off {mean_off * 1000:.2f} ms, on {mean_on * 1000:.2f} ms, "
                    f"{(mean_on / mean_off - 1) * 100:+.1f}%)"
                )
        finally:
            for gw in gateways.values():
                gw.stop()
            server.stop()


if __name__ == "__main__":
    main()
