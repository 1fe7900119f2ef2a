"""The gateway's hook dispatch calls exactly what mitmproxy's would, in the same order."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mitmproxy import exceptions, http, options
from mitmproxy.master import Master
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from proxy_addons.gateway import hook_dispatch


class Recorder:
    """An add-on that notes each request hook it sees in a shared list."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def request(self, flow: http.HTTPFlow) -> None:
        self.calls.append(self.name)


class AsyncRecorder(Recorder):
    async def request(self, flow: http.HTTPFlow) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(self.name)


class Quiet:
    """Has no hooks at all."""

    def __init__(self, name: str) -> None:
        self.name = name


class Parent:
    """Has children, like mitmproxy's script loader; they may change at any time."""

    def __init__(self, name: str, children: list[Any]) -> None:
        self.name = name
        self.addons = children


class Failing:
    name = "failing"

    def request(self, flow: http.HTTPFlow) -> None:
        raise ValueError("broken add-on")


class Halting:
    name = "halting"

    def request(self, flow: http.HTTPFlow) -> None:
        raise exceptions.AddonHalt()


def _chain(calls: list[str]) -> list[Any]:
    return [
        Recorder("a", calls),
        Quiet("q1"),
        AsyncRecorder("b", calls),
        Parent("p", [Recorder("p1", calls), Quiet("q2")]),
        Quiet("q3"),
        Recorder("c", calls),
    ]


async def _run(fast: bool, build: Any) -> list[str]:
    master = Master(options.Options())
    calls: list[str] = []
    master.addons.add(*build(calls))
    if fast:
        hook_dispatch.install(master.addons)
    await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    return calls


def test_same_calls_in_the_same_order_as_mitmproxy() -> None:
    stock = asyncio.run(_run(False, _chain))
    fast = asyncio.run(_run(True, _chain))
    assert stock == ["a", "b", "p1", "c"]
    assert fast == stock


def test_entries_without_the_hook_are_skipped() -> None:
    async def main() -> list[str]:
        master = Master(options.Options())
        master.addons.add(*_chain([]))
        index = hook_dispatch.install(master.addons)
        assert index is not None  # this mitmproxy has the internals it needs
        return [a.name for a, _ in index.entries("request")]

    assert asyncio.run(main()) == ["a", "b", "p", "c"]


def test_an_add_on_error_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def build(calls: list[str]) -> list[Any]:
        return [Recorder("a", calls), Failing(), Recorder("c", calls)]

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(_run(True, build)) == ["a", "c"]
    assert "broken add-on" in caplog.text


def test_addon_halt_stops_the_event() -> None:
    def build(calls: list[str]) -> list[Any]:
        return [Recorder("a", calls), Halting(), Recorder("c", calls)]

    assert asyncio.run(_run(False, build)) == ["a"]
    assert asyncio.run(_run(True, build)) == ["a"]


def test_changes_to_the_chain_and_to_children_are_seen() -> None:
    async def main() -> list[list[str]]:
        master = Master(options.Options())
        calls: list[str] = []
        parent = Parent("p", [])
        first = Recorder("a", calls)
        master.addons.add(first, parent)
        hook_dispatch.install(master.addons)
        seen = []
        for change in (
            lambda: None,
            lambda: master.addons.add(Recorder("late", calls)),
            lambda: parent.addons.append(Recorder("child", calls)),
            lambda: master.addons.remove(first),
        ):
            change()
            calls.clear()
            await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
            seen.append(list(calls))
        return seen

    assert asyncio.run(main()) == [["a"], ["a", "late"], ["a", "child", "late"], ["child", "late"]]


def test_an_options_error_goes_up_as_with_mitmproxy() -> None:
    class Refusing:
        name = "refusing"

        def request(self, flow: http.HTTPFlow) -> None:
            raise exceptions.OptionsError("bad option")

    def build(calls: list[str]) -> list[Any]:
        return [Recorder("a", calls), Refusing(), Recorder("c", calls)]

    for fast in (False, True):
        with pytest.raises(exceptions.OptionsError):
            asyncio.run(_run(fast, build))
