"""A gateway secret kept in a file of its own under var/: made once, read by every worker.

Each worker process of a gateway reads the same file, so a value one worker signs another
can check. Created with O_EXCL and mode 0600, so two workers starting at once agree on one
secret and no other local user can read it.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


def ensure_secret(path: Path) -> str:
    """The secret in `path`, created (random, owner-only) if there is none yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made before, or by another gateway worker starting at the same moment
    else:
        value = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        return value
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.02)  # its maker is still writing it
    raise OSError(f"{path} is empty: delete it and restart the gateway")


__all__ = ["ensure_secret"]
