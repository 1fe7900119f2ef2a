"""The agent runs on pupils' and staff devices without the gateway: every agent module imports
with proxy_addons unavailable (tests/test_architecture.py checks the same from the source)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

IMPORT_ALL = """
import importlib, json, pkgutil, sys
sys.modules["proxy_addons"] = None  # from here any import of the gateway raises ImportError
import agent
names = [m.name for m in pkgutil.walk_packages(agent.__path__, "agent.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(n for n, m in sys.modules.items() if m)}))
"""


def test_every_agent_module_imports_without_the_gateway() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {"agent.cli", "agent.check_suite", "agent.checks.base"} <= set(seen["imported"])
    assert not [n for n in seen["loaded"] if n.split(".")[0] == "proxy_addons"]


CHECK_ONLY = """
import json, sys
from agent.cli import main
try:
    main(["check", "--format", "json", "--state", sys.argv[1]])
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(n.split(".")[0] for n in sys.modules)))
"""


def test_the_service_commands_leave_the_filter_checks_http_libraries_unloaded(
    tmp_path: Path,
) -> None:
    """`check` (and `run`) never load pypac and requests (about 6 MB resident): only the
    termly filtering check, `checks`, uses them (bench/agent_bench.py measures the RSS)."""
    done = subprocess.run(
        [sys.executable, "-c", CHECK_ONLY, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "agent" in loaded and not loaded & {"pypac", "requests", "urllib3"}
    helped = subprocess.run(
        [sys.executable, "-m", "agent.cli", "checks", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0 and "--by BY" in helped.stdout
