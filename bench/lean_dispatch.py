"""mitmdump script: mitmproxy's own add-ons only, dispatched as the gateway dispatches them.

`schoolgate run` skips add-ons that have no handler for an event (proxy_addons/
hook_dispatch.py), which makes mitmproxy itself faster. Against bare mitmdump with the same
dispatch, bench/throughput_bench.py can tell what the gateway's add-ons cost on their own.
"""

from __future__ import annotations

from mitmproxy import ctx

from proxy_addons.gateway import hook_dispatch


class LeanDispatch:
    def running(self) -> None:
        hook_dispatch.install(ctx.master.addons)


addons = [LeanDispatch()]
