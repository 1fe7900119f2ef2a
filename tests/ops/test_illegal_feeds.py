"""The illegal tier's feeds against a real local HTTPS server (its certificate from a test CA
the feed trusts through `ca_file`): a plain and a hashed list swap in, a stale one, one with
a wrong published checksum, a cut-off one and one that is down keep the last good list and
are reported; the doctor FAILs what is unfit; the gateway's decision core blocks a URL of
the hashed feed once it is fetched; nothing printed names an entry."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from proxy_addons.cli.main import main
from proxy_addons.core.decide import Reason
from proxy_addons.core.illegal_hashes import entry_hash
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.ops import school_ca, server_cert
from proxy_addons.ops.doctor.findings import Level
from proxy_addons.ops.doctor.illegal import check_illegal_tier
from proxy_addons.ops.illegal_feeds.fetch import fetch_due_feeds, fetch_feed
from proxy_addons.ops.illegal_feeds.health import TierState, tier_health
from tests.conftest import copy_policy
from tests.core.test_decision import PUPIL, ask

TOKEN = "licensed-feed-token-0123456789"
PLAIN = (
    b"# provider list\nhttps://plain-listed.test/a.html\nhttps://plain-listed.test/b/c.jpg\n"
    b"plain-listed.test/e?id=1\n"
)
HASHED_URL = "https://hashed-listed.test/gallery/"
HASHED = (entry_hash(HASHED_URL) + "\n" + entry_hash("https://other.test/x") + "\n").encode()


@dataclass
class Served:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class FeedServer:
    """A provider's feed over HTTPS: paths -> what they answer; wants the bearer token."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.routes: dict[str, Served] = {}
        self.seen_auth: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.seen_auth.append(self.headers.get("Authorization", ""))
                served = server.routes.get(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    served = Served(b"no licence", 401)
                elif served is None:
                    served = Served(b"not here", 404)
                self.send_response(served.status)
                for name, value in served.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(served.body)))
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[FeedServer, Path]]:
    ca = tmp_path / "provider-ca"
    school_ca.create(ca, "Test list provider")
    cert = server_cert.issue(ca, tmp_path / "provider", ["127.0.0.1"])
    server = FeedServer(cert.cert, cert.key)
    try:
        yield server, ca / school_ca.CERT_FILE
    finally:
        server.close()


def _policy(tmp_path: Path, server: FeedServer, ca_cert: Path, feeds: list[str]) -> Path:
    path = copy_policy(tmp_path)
    (path.parent / "feed-token").write_text(TOKEN + "\n")
    common = f"secret_file: feed-token, ca_file: {ca_cert}"
    lines = "".join(f"    - {{{f.format(url=server.url)}, {common}}}\n" for f in feeds)
    text = path.read_text()
    old = "illegal:\n  - exact: lists/illegal/exact.txt\n  - prefix: lists/illegal/prefix.txt\n"
    assert text.count(old) == 1
    new = (
        "illegal:\n  lists:\n    - exact: lists/illegal/exact.txt\n"
        f"  feeds_folder: {tmp_path / 'var' / 'illegal'}\n  feeds:\n{lines}"
    )
    path.write_text(text.replace(old, new))
    return path


FIVE = [
    "name: plain, url: '{url}/plain.txt'",
    "name: hashed, url: '{url}/hashed.txt', format: hashed, checksum_url: '{url}/hashed.sha256'",
    "name: stale, url: '{url}/stale.txt', max_age_hours: 24",
    "name: wrongsum, url: '{url}/wrong.txt', checksum_url: '{url}/wrong.sha256'",
    "name: down, url: 'https://127.0.0.1:9/down.txt'",
]


def _serve_all(server: FeedServer) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    server.routes.update(
        {
            "/plain.txt": Served(PLAIN),
            "/hashed.txt": Served(HASHED),
            "/hashed.sha256": Served(
                f"{hashlib.sha256(HASHED).hexdigest()}  hashed.txt\n".encode()
            ),
            "/stale.txt": Served(
                PLAIN, headers={"Last-Modified": format_datetime(old, usegmt=True)}
            ),
            "/wrong.txt": Served(PLAIN),
            "/wrong.sha256": Served(("0" * 64 + "  wrong.txt\n").encode()),
        }
    )


def test_good_feeds_swap_in_and_bad_ones_are_reported(
    tmp_path: Path, provider: tuple[FeedServer, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    server, ca_cert = provider
    _serve_all(server)
    policy_path = _policy(tmp_path, server, ca_cert, FIVE)

    code = main(["lists", "update", "--feeds-only", "--policy", str(policy_path)])
    out = capsys.readouterr()
    assert code == 1  # a feed failed: the timer's unit fails, the journal says so
    assert "illegal-tier feed plain: 3 entries taken" in out.out
    assert "illegal-tier feed hashed: 2 entries taken" in out.out
    assert "illegal-tier feed stale: 3 entries taken" in out.out  # taken, but old at source
    assert "feed wrongsum FAILED" in out.err and "is not the published" in out.err
    assert "feed down FAILED" in out.err and "download failed" in out.err
    for listed in ("plain-listed", "hashed-listed", "gallery"):  # counts only, never entries
        assert listed not in out.out + out.err
    assert set(server.seen_auth) == {f"Bearer {TOKEN}"}

    folder = tmp_path / "var" / "illegal"
    assert (folder / "plain.txt").read_bytes() == PLAIN
    assert (folder / "hashed.txt").read_bytes() == HASHED
    assert not (folder / "wrongsum.txt").exists() and not (folder / "down.txt").exists()
    assert json.loads((folder / "down.json").read_text())["last_error"]

    # The decision core takes the hashed feed's entry: every URL below the folder blocked.
    loaded = load_all(policy_path, tmp_path / "index")
    d = ask(loaded, "https://hashed-listed.test/gallery/img/1.jpg", PUPIL)
    assert d.reason is Reason.ILLEGAL and d.entry == f"sha256:{entry_hash(HASHED_URL)}"
    assert ask(loaded, "https://plain-listed.test/a.html", PUPIL).reason is Reason.ILLEGAL
    assert ask(loaded, "https://hashed-listed.test/other", PUPIL).reason is not Reason.ILLEGAL

    # The doctor FAILs the stale feed and the two never fetched, and names no entry.
    tier = load_policy(policy_path).illegal
    health = tier_health(tier, production=True)
    assert health.state is TierState.STALE or health.state is TierState.NEVER_FETCHED
    checks = check_illegal_tier(policy_path, production=True)
    failed = " ".join(c.message for c in checks if c.level is Level.FAIL)
    assert "feed 'stale' is 72 h old (published" in failed
    assert "feed 'wrongsum' has never been fetched" in failed
    assert "feed 'down' has never been fetched" in failed
    assert "plain-listed" not in failed


def test_a_failed_fetch_keeps_the_last_good_list(
    tmp_path: Path, provider: tuple[FeedServer, Path]
) -> None:
    server, ca_cert = provider
    _serve_all(server)
    policy_path = _policy(tmp_path, server, ca_cert, FIVE[:1])
    feeds = load_policy(policy_path).illegal.feeds
    assert fetch_due_feeds(feeds)[0].ok
    list_file = feeds[0].list_file

    for broken, why in [
        (Served(b"", 200), "the list is empty"),
        (Served(b"https://plain-listed.test/a.html\nnot a url at all\n"), "line 2 is not a URL"),
        (Served(b"oops", 503), "HTTP 503"),
        (Served(b"https://one.test/x\n"), "below 50%"),  # cut off: 1 entry where there were 3
    ]:
        server.routes["/plain.txt"] = broken
        result = fetch_feed(feeds[0])
        assert not result.ok and why in result.message
        assert list_file.read_bytes() == PLAIN  # the last good list stays
    # Within its refresh interval a feed isn't fetched again; --force fetches it.
    server.routes["/plain.txt"] = Served(PLAIN + b"https://plain-listed.test/d\n")
    assert fetch_due_feeds(feeds)[0].skipped
    assert fetch_due_feeds(feeds, force=True)[0].entries == 4


def test_a_wrong_token_or_an_untrusted_server_is_refused(
    tmp_path: Path, provider: tuple[FeedServer, Path]
) -> None:
    server, ca_cert = provider
    _serve_all(server)
    policy_path = _policy(tmp_path, server, ca_cert, FIVE[:1])
    (policy_path.parent / "feed-token").write_text("someone-elses-token")
    feed = load_policy(policy_path).illegal.feeds[0]
    assert "HTTP 401" in fetch_due_feeds((feed,))[0].message
    text = policy_path.read_text().replace(f", ca_file: {ca_cert}", "")
    policy_path.write_text(text)
    feed = load_policy(policy_path).illegal.feeds[0]
    assert "CERTIFICATE_VERIFY_FAILED" in fetch_due_feeds((feed,))[0].message


def test_the_shipped_test_entries_fail_the_doctor_on_a_production_install(tmp_path: Path) -> None:
    path = copy_policy(tmp_path)
    checks = check_illegal_tier(path, production=True)
    assert any(
        c.level is Level.FAIL and "only placeholder (test) entries" in c.message for c in checks
    )
    trial = check_illegal_tier(path, production=False)
    assert not any(c.level is Level.FAIL for c in trial)
    assert any("fine for a trial" in c.message for c in trial)


def test_a_current_feed_is_ok_and_ages_past_its_limit(
    tmp_path: Path, provider: tuple[FeedServer, Path]
) -> None:
    server, ca_cert = provider
    _serve_all(server)
    policy_path = _policy(tmp_path, server, ca_cert, FIVE[:2])
    feeds = load_policy(policy_path).illegal.feeds
    assert all(r.ok for r in fetch_due_feeds(feeds))
    tier = load_policy(policy_path).illegal
    now = datetime.now(UTC)
    health = tier_health(tier, production=True, now=now)
    assert health.fit and health.age_seconds is not None and health.age_seconds < 60
    checks = check_illegal_tier(policy_path, production=True, now=now)
    assert [c.level for c in checks] == [Level.OK]
    later = tier_health(tier, production=True, now=now + timedelta(hours=25))
    assert later.state is TierState.STALE and later.age_seconds is not None
