"""The background worker the add-ons hand work to: order, errors, closing."""

from __future__ import annotations

import threading
import time

import pytest

from proxy_addons.core.background import Worker


def test_runs_calls_in_order_on_its_own_thread() -> None:
    worker = Worker("test-worker")
    seen: list[tuple[int, str]] = []
    for n in range(100):
        assert worker.submit(lambda n=n: seen.append((n, threading.current_thread().name)))
    worker.close(wait=True)
    assert [n for n, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {"test-worker"}


def test_a_failing_call_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker("test-failing")
    done: list[str] = []

    def boom() -> None:
        raise ValueError("broken page")

    worker.submit(boom)
    worker.submit(done.append, "after")
    worker.close(wait=True)
    assert done == ["after"]
    assert "background task failed" in caplog.text
    assert "broken page" in caplog.text


def test_closed_worker_refuses_work() -> None:
    worker = Worker("test-closed")
    worker.submit(lambda: None)
    worker.close(wait=True)
    assert worker.submit(lambda: None) is False


def test_close_can_drop_what_is_queued() -> None:
    worker = Worker("test-drop")
    gate = threading.Event()
    ran: list[int] = []
    worker.submit(gate.wait)  # holds the thread while more is queued
    for n in range(10):
        worker.submit(ran.append, n)
    worker.close(wait=False, drop_pending=True)
    gate.set()
    assert worker._thread is not None
    worker._thread.join(5)
    assert not worker._thread.is_alive()
    assert ran == []


def test_close_before_any_work_starts_no_thread() -> None:
    worker = Worker("test-idle")
    worker.close(wait=True)
    assert worker._thread is None
    assert worker.submit(lambda: None) is False


def test_a_paced_worker_takes_what_queued_while_it_rested_in_one_run() -> None:
    # The point of `pace`: a thread woken once per run of work, not once per request. What
    # is queued while it rests waits for the rest to end, then runs all together.
    worker = Worker("test-paced", pace=0.5)
    ran: list[tuple[int, float]] = []
    first = threading.Event()

    def note(n: int) -> None:
        ran.append((n, time.monotonic()))
        first.set()

    worker.submit(note, 0)
    assert first.wait(5)
    time.sleep(0.1)  # the thread has found the queue empty and is resting
    for n in range(1, 50):
        worker.submit(note, n)
    worker.close(wait=True)  # work queued before the close is still done
    assert [n for n, _ in ran] == list(range(50))
    started = ran[0][1]
    assert all(at - started >= 0.45 for _, at in ran[1:])  # none ran during the rest
