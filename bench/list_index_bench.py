"""Benchmark of the category list index at full UT1 scale.

Loads every UT1 category folder found in the directory named on the command line,
adds synthetic domains (a plain domain file in a temp folder, category "synthetic")
up to --total entries, and prints build/open times, file size, the resident memory
of a fresh serving process, and host decisions per second on one core. Figures
only, with the targets beside them; nothing here asserts.

    .venv/bin/python bench/list_index_bench.py ../shared/data/ut1 [--total 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING = Path(__file__).with_name("list_index_serving.py")  # the serving process
sys.path.insert(0, str(ROOT))

from proxy_addons.core.lists.build import build_index  # noqa: E402
from proxy_addons.core.lists.index import ListIndex  # noqa: E402
from proxy_addons.core.lists.layout import CategorySources  # noqa: E402
from proxy_addons.core.lists.sources import ListSource, iter_domains  # noqa: E402

SYLLABLES = (
    "ka ro mi na te so lu vi de pa zo ri fe ga bo ne tu la xi mo "
    "an el ok ur is ta ve po qu ar en il yo ba ce di fu ho ja"
).split()
WORDS = (
    "shop news blog mail cloud data game play learn school city photo music video "
    "travel sport food health bank home tech world market media online store art"
).split()
TLDS = ["com"] * 8 + ["net", "org", "fr", "de", "io", "info", "co.uk", "ru", "es", "it"]


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def synthetic_domain(rng: random.Random, i: int) -> str:
    # Unique by construction (the number), shaped like real registrations.
    return f"{word(rng)}{rng.choice(WORDS)}{i}.{rng.choice(TLDS)}"


def unlisted_host(rng: random.Random) -> str:
    """A realistic host that no list names (the 'x' label never occurs in synthetic names)."""
    base = f"{word(rng)}x{rng.choice(WORDS)}{rng.randint(0, 99999)}.{rng.choice(TLDS)}"
    shape = rng.random()
    if shape < 0.45:
        return f"www.{base}"
    if shape < 0.75:
        return f"{rng.choice(['cdn', 'api', 'static', 'img', 'm'])}.{word(rng)}.{base}"
    return base


def count_lines(folder: Path) -> int:
    total = 0
    for name in ("domains", "urls"):
        for path in folder.glob(f"*/{name}"):
            with open(path, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
    return total


def checksum_ms(path: Path, idx: ListIndex) -> dict[str, float]:
    """Milliseconds to check the whole file: the crc32 the index uses, and the hashes it
    could have used instead (best of three, the file in the page cache)."""
    import hashlib
    import mmap

    out = {"crc32 (ListIndex.verify)": min(_timed(idx.verify) for _ in range(3))}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        for name in ("sha256", "blake2b"):

            def digest(name: str = name) -> None:
                h = hashlib.new(name)
                for pos in range(0, len(view), 8 << 20):
                    h.update(view[pos : pos + (8 << 20)])

            out[name] = min(_timed(digest) for _ in range(3))
        view.release()
    return out


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def rate(idx: ListIndex, hosts: list[str]) -> float:
    match = idx.match_host
    started = time.perf_counter()
    for host in hosts:
        match(host)
    return len(hosts) / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("ut1", type=Path, help="folder of UT1 category folders")
    ap.add_argument("--total", type=int, default=5_000_000, help="entries in all (default 5M)")
    ap.add_argument("--lookups", type=int, default=1_000_000, help="lookups per rate figure")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    folders = sorted(p for p in args.ut1.iterdir() if p.is_dir() and not p.name.startswith("."))
    real = count_lines(args.ut1)
    n_synth = max(0, args.total - real)
    print(f"UT1 folder: {args.ut1} ({len(folders)} categories, ~{real:,} entries)")
    print(f"synthetic domains: {n_synth:,} (to reach --total {args.total:,})")
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        work = Path(tmp)
        synth_file = work / "synthetic.txt"
        synth_sample: list[str] = []
        with open(synth_file, "w") as fh:
            for i in range(n_synth):
                name = synthetic_domain(rng, i)
                fh.write(name + "\n")
                if i % 97 == 0:
                    synth_sample.append(name)
        cats = [CategorySources(p.name, (ListSource("ut1", p),)) for p in folders]
        cats.append(CategorySources("synthetic", (ListSource("domains", synth_file),)))

        # Cold build: no index yet (the list files themselves are in the page cache).
        started = time.perf_counter()
        path = build_index(cats, work / "index")
        cold = time.perf_counter() - started
        started = time.perf_counter()
        idx = ListIndex.open(path)
        open_s = time.perf_counter() - started
        # Warm: lists unchanged, so the fingerprint finds the existing file.
        started = time.perf_counter()
        again = build_index(cats, work / "index")
        idx2 = ListIndex.open(again)
        warm = time.perf_counter() - started
        idx2.close()
        size = path.stat().st_size
        checks = checksum_ms(path, idx)

        real_listed = [d for f in folders for d in _sample_domains(f, rng)]
        listed = real_listed + synth_sample
        n = args.lookups
        mixed = []
        for _ in range(n):
            if rng.random() < 0.5:
                d = rng.choice(listed)
                mixed.append(rng.choice(["", "www.", "cdn.", "m.", "a.b."]) + d)
            else:
                mixed.append(unlisted_host(rng))
        unlisted = [unlisted_host(rng) for _ in range(n)]
        hit_share = sum(1 for h in mixed[:20000] if idx.match_host(h)) / 20000
        assert not any(idx.match_host(h) for h in unlisted[:20000])  # sanity

        mixed_rate = rate(idx, mixed)
        unlisted_rate = rate(idx, unlisted)

        # Reload off the request path: a full rebuild in a subprocess (fresh index folder,
        # so nothing is reused) while this thread keeps answering lookups.
        done = threading.Event()
        rebuild: dict[str, float] = {}

        def rebuild_job() -> None:
            t0 = time.perf_counter()
            build_index(cats, work / "index-reload", in_subprocess=True)
            rebuild["seconds"] = time.perf_counter() - t0
            done.set()

        thread = threading.Thread(target=rebuild_job)
        thread.start()
        looked, at, started = 0, 0, time.perf_counter()
        match = idx.match_host
        while not done.is_set():  # the same mixed hosts as above, 10,000 at a time
            batch = mixed[at : at + 10_000]
            for host in batch:
                match(host)
            looked += len(batch)
            at = (at + 10_000) % len(mixed)
        during = looked / (time.perf_counter() - started)
        thread.join()
        builder_peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

        hosts_file = work / "hosts.txt"
        hosts_file.write_text("\n".join(mixed[:100_000]))
        child = subprocess.run(
            [sys.executable, str(SERVING), str(path), str(hosts_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode:
            sys.exit(f"the serving process failed:\n{child.stderr}")
        mem = json.loads(child.stdout)

        mb = 1 << 20
        print()
        print(
            f"entries in index:               {idx.entry_count:>12,}   "
            f"({idx.domain_count:,} domains, {idx.url_count:,} urls, "
            f"{len(idx.categories)} categories)"
        )
        print(f"index file size:                {size / mb:>12.1f} MB")
        print(f"cold build (read + index):      {cold:>12.2f} s    target <= 10 s for 5M")
        print(f"open (mmap + checksum):         {open_s * 1000:>12.1f} ms")
        crc_ms = checks["crc32 (ListIndex.verify)"]
        print(
            f"    of which the checksum:      {crc_ms:>12.1f} ms (open without it ~"
            f"{max(0.0, open_s * 1000 - crc_ms):.1f} ms)"
        )
        for name, ms in checks.items():
            print(f"    whole file, {name + ':':<24} {ms:>8.1f} ms")
        print(f"warm re-open (fingerprint hit): {warm * 1000:>12.1f} ms")
        print(f"rebuild in subprocess:          {rebuild['seconds']:>12.2f} s")
        print(f"peak RSS of the builder process: {builder_peak_kb / 1024:>11.1f} MB")
        print(
            f"serving process RSS after {mem['lookups'] / 1e6:.1f}M lookups: "
            f"{mem['rss'] / mb:6.1f} MB    target <= 150 MB"
        )
        print(
            f"    growth from open + lookups {(mem['rss'] - mem['before_open']) / mb:.1f} MB "
            f"(before open: interpreter, imports and 100k test hosts {mem['before_open'] / mb:.1f}"
            " MB)"
        )
        shared, anon = mem["rss_file_kb"] / 1024, mem["rss_anon_kb"] / 1024
        print(
            f"    file-backed (index + libraries, shared page cache) {shared:.1f} MB, "
            f"anonymous {anon:.1f} MB, private (USS) {mem['uss'] / mb:.1f} MB"
        )
        print(
            f"decisions/s, mixed ({hit_share:.0%} listed):   {mixed_rate:>10,.0f}"
            "    target >= 300,000 on one core"
        )
        print(f"decisions/s, all unlisted:      {unlisted_rate:>12,.0f}    target >= 300,000")
        print(f"decisions/s during a rebuild:   {during:>12,.0f}    (rebuild in a subprocess)")
        print(
            f"load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine skews)"
        )
        idx.close()


def _sample_domains(folder: Path, rng: random.Random, k: int = 200) -> list[str]:
    src = ListSource("ut1", folder)
    if not (folder / "domains").is_file():
        return []
    names = list(iter_domains(src))
    return rng.sample(names, min(k, len(names)))


if __name__ == "__main__":
    main()
