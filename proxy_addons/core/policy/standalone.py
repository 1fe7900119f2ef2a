"""The policy and its list index loaded by a command, a tool or a test.

The list index is built in this process (numpy does the work) unless `in_subprocess`. The
gateway does not come here: its `runtime.PolicyRuntime` always builds in a subprocess, so a
serving process never imports the builder and numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from proxy_addons.core.lists.build import build_here
from proxy_addons.core.lists.build_process import build_in_subprocess
from proxy_addons.core.policy.runtime import LoadedPolicy, load_with


def load_all(
    policy_path: Path,
    index_dir: Path,
    *,
    in_subprocess: bool = False,
    on_damaged: Callable[[str], None] | None = None,
) -> LoadedPolicy:
    """Validate the policy and open (building if needed) its list index; PolicyLoadError
    says what to fix.

    The index is checked against its checksum and the lists; a damaged one (or an index
    of other lists under its name) is rebuilt, after telling `on_damaged`, and never
    served.
    """
    build = build_in_subprocess if in_subprocess else build_here
    return load_with(policy_path, index_dir, build, on_damaged=on_damaged)
