"""Where the Chromium tests save their screenshots: the docs' own folder when asked
(`SCHOOLGATE_SCREENSHOTS=1 make test`, to refresh docs/screenshots/ after a page changes),
otherwise a folder under the system's temporary directory, so a test run leaves the
working tree as it found it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shot(name: str) -> Path:
    """The path to save the screenshot `name` (e.g. "console-alerts.png") to."""
    if os.environ.get("SCHOOLGATE_SCREENSHOTS") == "1":
        folder = DOCS
    else:
        folder = Path(tempfile.gettempdir()) / "schoolgate-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
