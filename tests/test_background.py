"""The background worker the add-ons hand work to: order, errors, closing."""

from __future__ import annotations

import threading

import pytest

from proxy_addons.background import Worker


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
