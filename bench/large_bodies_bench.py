"""The gateway's memory under several large uploads and downloads at once.

A real mitmdump with the gateway's add-ons (the test policy with content filtering for the
default profile, as tests/gateway/test_large_bodies.py) in front of a local upstream that makes
bodies as it sends them and hashes uploads as they arrive (tests/support/bulk_server.py),
so only the gateway holds anything. Several clients at once send uploads (half with a
Content-Length, half chunked) and fetch downloads (a file, and an HTML page the content
filter reads the head of), each `--mb` megabytes. A thread samples the gateway's RSS
(psutil, every 20 ms) and the bench prints it before the load and at its peak, with the
bytes moved and the time taken. Every body is checked (length and SHA-256) on arrival.

    .venv/bin/python bench/large_bodies_bench.py [--mb 200] [--uploads 4] [--downloads 4]
        [--unbounded]

`--unbounded` runs the same load a second time with streaming turned off the way an
operator could (`--set stream_large_bodies=100g`), to show what mitmproxy does without it:
every body held whole. Figures only; nothing here asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from tests.conftest import Gateway, Upstream, _self_signed, start_mitmdump  # noqa: E402
from tests.gateway.test_content_filter_e2e import MILD, content_policy  # noqa: E402
from tests.support.bulk_server import BulkServer, body_blocks, body_sha256  # noqa: E402

MB = 1 << 20


class PeakRss:
    """Samples a process's resident memory (with its children) until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        procs = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.Error:
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def upload(gw: Gateway, size: int, index: int, with_length: bool) -> int:
    blocks: Iterator[bytes] = body_blocks(size, "bin")
    headers = {"Content-Length": str(size)} if with_length else {}
    with httpx.Client(proxy=gw.proxy, verify=str(gw.ca), timeout=600) as client:
        r = client.post(f"http://plain.test/upload-{index}", content=blocks, headers=headers)
    got = r.json()
    assert got == {"length": size, "sha256": body_sha256(size, "bin")}, got
    return size


def download(gw: Gateway, size: int, index: int, kind: str) -> int:
    head = MILD if kind == "html" else ""
    url = f"https://plain.test/download-{index}.{kind}?type={kind}&size={size}&head={head}"
    digest, length = hashlib.sha256(), 0
    with httpx.Client(proxy=gw.proxy, verify=str(gw.ca), timeout=600) as client:
        with client.stream("GET", url) as r:
            for block in r.iter_bytes():
                digest.update(block)
                length += len(block)
    assert r.status_code == 200 and length == size, (r.status_code, length)
    assert digest.hexdigest() == body_sha256(size, kind, head.encode())
    return size


def run_load(gw: Gateway, args: argparse.Namespace) -> None:
    size = args.mb * MB
    jobs: list[Callable[[], int]] = []
    for i in range(args.uploads):
        jobs.append(lambda i=i: upload(gw, size, i, with_length=i % 2 == 0))
    for i in range(args.downloads):
        jobs.append(lambda i=i: download(gw, size, i, "html" if i % 2 else "bin"))
    moved: list[int] = []
    errors: list[BaseException] = []

    def run(job: Callable[[], int]) -> None:
        try:
            moved.append(job())
        except BaseException as exc:  # reported below, the others go on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    with PeakRss(gw.process.pid) as rss:
        before = rss.now()
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
    total = sum(moved)
    print(f"  bodies:        {args.uploads} uploads + {args.downloads} downloads of {args.mb} MB")
    print(f"  moved:         {total / MB:,.0f} MB in {took:.1f} s ({total / MB / took:,.0f} MB/s)")
    print(
        f"  gateway RSS:   {before / MB:,.0f} MB before, {rss.peak / MB:,.0f} MB at the peak "
        f"(+{(rss.peak - before) / MB:,.0f} MB)"
    )
    for exc in errors:
        print(f"  FAILED: {exc!r}")


def gateway(tmp: Path, bulk: BulkServer, extra: list[str]) -> Gateway:
    return start_mitmdump(
        content_policy(tmp),
        tmp / "var",
        Upstream(bulk.http_port, bulk.https_port),
        extra=["--set", "termlog_verbosity=warn", *extra],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of each body (MB)")
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--downloads", type=int, default=4)
    parser.add_argument("--unbounded", action="store_true", help="also run without streaming")
    args = parser.parse_args()
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bulk = BulkServer(*_self_signed(tmp))
        runs = [("the gateway as it runs (bodies over the cap streamed)", [])]
        if args.unbounded:
            runs.append(
                (
                    "streaming off (--set stream_large_bodies=100g)",
                    ["--set", "stream_large_bodies=100g"],
                )
            )
        try:
            for n, (title, extra) in enumerate(runs):
                gw = gateway(tmp / f"run{n}", bulk, extra)
                try:
                    print(title)
                    run_load(gw, args)
                finally:
                    gw.stop()
        finally:
            bulk.stop()
    print(f"load average at end:   {', '.join(f'{x:.2f}' for x in psutil.getloadavg())}")


if __name__ == "__main__":
    main()
