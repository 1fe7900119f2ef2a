"""The term's device figures as Prometheus gauges: served on a real gateway's /metrics with
the check and a fixed status word as their only labels (no device, host or user), the
current term's figures, worked out again (in the background) only once they are
REFRESH_SECONDS old. (That the IT dashboard names only metrics the gateway exports:
tests/record/test_metrics.py.)"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proxy_addons.core.policy.load import load_policy
from proxy_addons.devices.term_gauges import REFRESH_SECONDS, TermGauges
from proxy_addons.store import Store, store_url
from tests.conftest import Upstream
from tests.devices.test_device_watch import gateway_metrics, watched_policy
from tests.devices.test_term_compliance import enrol, results, send
from tests.pg import db_url  # noqa: F401  (a fixture)

HOSTS = ("good-pc", "patchy-pc", "quiet-pc")


def term_policy(tmp_path: Path, today: dt.date) -> Path:
    """The watched test policy with a term from 30 days ago to 30 days ahead."""
    path = watched_policy(tmp_path)
    start, end = today - dt.timedelta(days=30), today + dt.timedelta(days=30)
    text = re.sub(
        r"  terms:\n    - \{name: Whole year[^\n]*\n",
        f"  terms:\n    - {{name: This term, start: {start}, end: {end}}}\n",
        path.read_text(),
    )
    path.write_text(text)
    return path


def seed_term(store: Store, now: dt.datetime) -> None:
    """good-pc passes all term; patchy-pc failed its patches for four days and fails its
    screen lock now; quiet-pc never reported."""
    ago = [now - dt.timedelta(days=n) for n in (20, 16, 12, 8, 4, 1)]
    good = enrol(store, "good-pc", ago[0])
    patchy = enrol(store, "patchy-pc", ago[0])
    enrol(store, "quiet-pc", ago[0])
    for n, at in enumerate(ago):
        send(store, good, at, results())
        patches = "fail" if n == 2 else "pass"
        lock = "fail" if n == 5 else "pass"
        send(store, patchy, at, results(patches=patches, screen_lock=lock))


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("schoolgate_device_term")
    }


def test_the_term_gauges_on_the_gateway_s_metrics(tmp_path: Path, upstream: Upstream) -> None:
    now = dt.datetime.now(dt.UTC)
    policy_path = term_policy(tmp_path, now.date())
    var = tmp_path / "var"
    var.mkdir()
    store = Store.open(store_url(var, None))
    seed_term(store, now)
    store.dispose()
    text = gateway_metrics(policy_path, var, upstream)
    found = gauges(text)

    def devices(check: str, status: str) -> float:
        return found[("schoolgate_device_term_devices", (("check", check), ("status", status)))]

    assert devices("overall", "compliant_all_term") == 1  # good-pc
    assert devices("overall", "non_compliant_in_term") == 1  # patchy-pc
    assert devices("overall", "not_reported") == 1  # quiet-pc: not known, not compliant
    assert devices("patches", "non_compliant_in_term") == 1
    assert devices("disk_encryption", "compliant_all_term") == 2
    days = {k[1][0][1]: v for k, v in found.items() if k[0].endswith("_non_compliant_days")}
    assert days["patches"] == 4 and days["disk_encryption"] == 0
    assert 0.9 < days["screen_lock"] < 1.1  # since its last report, a day ago, to now
    now_short = {k[1][0][1]: v for k, v in found.items() if k[0].endswith("_non_compliant_now")}
    assert now_short == {
        "overall": 1,
        "disk_encryption": 0,
        "screen_lock": 1,
        "patches": 0,
    }
    term_start = dt.datetime.combine(
        now.date() - dt.timedelta(days=30), dt.time(), load_policy(policy_path).timezone
    )
    assert found[("schoolgate_device_term_start_timestamp_seconds", ())] == term_start.timestamp()
    labels = {
        name
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("schoolgate_device_term")
        for name in s.labels
    }
    assert labels == {"check", "status"}
    assert not any(h in text for h in HOSTS) and "jsmith" not in text


def test_the_gauges_are_worked_out_again_only_when_old(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    policy = load_policy(term_policy(tmp_path, now.date()))
    store = Store.open(db_url)
    device = enrol(store, "lab-pc-01", now - dt.timedelta(days=2))
    send(store, device, now - dt.timedelta(days=1), results())
    kept = TermGauges()

    def overall_short(at: dt.datetime) -> float:
        families = {f.name: f for f in kept.collect(store, policy, at)}
        (sample,) = [
            s
            for s in families["schoolgate_device_term_non_compliant_now"].samples
            if s.labels["check"] == "overall"
        ]
        return sample.value

    assert overall_short(now) == 0  # the first scrape waits for the first figures
    send(store, device, now + dt.timedelta(minutes=1), results(patches="fail"))
    soon = now + dt.timedelta(seconds=REFRESH_SECONDS - 1)
    assert overall_short(soon) == 0  # the figures of a scrape ago
    later = now + dt.timedelta(seconds=REFRESH_SECONDS)
    overall_short(later)  # due: worked out again in the background
    kept.wait()
    assert overall_short(later) == 1
