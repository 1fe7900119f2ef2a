"""Rewrites the fixture sets in this folder: `.venv/bin/python tests/data/agent/make_fixtures.py`.

One module per platform (fixtures_linux.py, fixtures_macos.py, fixtures_windows.py) over
fixtures_common.py; each writes its sets when imported. Where an output is a real capture,
its set's meta.json names where it came from (see README.md); the Windows index keys are built
from agent.checks.windows so they follow script edits.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures_linux  # noqa: E402, F401
import fixtures_macos  # noqa: E402, F401
import fixtures_windows  # noqa: E402, F401

print("ok")
