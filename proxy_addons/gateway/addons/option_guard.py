"""Fail closed on a `--set` value mitmproxy cannot parse, when the gateway is a mitmdump script.

mitmdump keeps `--set` values for a script's options until the script declares them, then
parses them all at once; one that does not parse (`--set schoolgate_content_max_bytes=2MB`,
a bool given as "yes") raises where nothing reports it, and mitmdump carries on as a plain
proxy without the script's add-ons: nothing is filtered. Loaded after the gateway's add-ons
(gateway/chain.py), this one parses the waiting values first, takes the bad ones out and reports
them from `configure`, which mitmdump treats as a start-up error: it says so and exits.
`schoolgate run` sets options after its add-ons are loaded and reports errors itself.
"""

from __future__ import annotations

from mitmproxy import exceptions, optmanager
from mitmproxy.addonmanager import Loader


class OptionGuard:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def load(self, loader: Loader) -> None:
        options = loader.master.options
        for name, value in list(options.deferred.items()):
            option = options._options.get(name)
            if option is None or not isinstance(value, optmanager._UnconvertedStrings):
                continue
            try:
                options._parse_setval(option, value.val)  # what mitmdump is about to do
            except Exception as exc:  # OptionsError, or NotImplementedError for a float
                del options.deferred[name]
                self.problems.append(f"--set {name}={'='.join(value.val)}: {exc}")

    def configure(self, updated: set[str]) -> None:
        problems, self.problems = self.problems, []  # once: a later configure must not fail
        if problems:
            raise exceptions.OptionsError("Schoolgate cannot start: " + "; ".join(problems))
