"""Building the list index in a separate Python process, so a reload inside the gateway does
not hold the request path's GIL (nor load numpy into a serving process).

The child is `python -m proxy_addons.core.lists.build`: it reads the request as JSON on stdin,
builds with `build.build_here`, answers one JSON line on stdout and sends its log records as
JSON lines on stderr, which are logged here again.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy_addons.core.lists.layout import (
    CategorySources,
    Expected,
    TransientListError,
    index_folder,
    index_path,
    problem_at,
    touch,
)
from proxy_addons.core.lists.sources import ListSourceError

logger = logging.getLogger(__name__)

BUILD_TIMEOUT = 900.0


def build_in_subprocess(
    cats: Sequence[CategorySources], index_dir: Path, expected: Expected, verify: bool
) -> tuple[Path, Expected]:
    """(the index file, what it must hold), reusing the file whose header is of these lists
    unless `verify`; else a builder process builds it (its errors arrive as ListSourceError)."""
    index_dir = index_folder(index_dir)
    target = index_path(index_dir, expected.fingerprint)
    if verify or problem_at(target, expected) is not None:
        return _run_builder(cats, index_dir, expected, verify)
    touch(target)
    return target, expected


def _run_builder(
    cats: Sequence[CategorySources], index_dir: Path, expected: Expected, verify: bool
) -> tuple[Path, Expected]:
    request = {
        "index_dir": str(index_dir),
        "verify": verify,
        "fingerprint": expected.fingerprint,
        "cats": [
            {"category": c.category, "sources": [[s.kind, str(s.path)] for s in c.sources]}
            for c in cats
        ],
    }
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "proxy_addons.core.lists.build"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TransientListError(
            f"building the list index took longer than {BUILD_TIMEOUT:.0f} s and was stopped"
        ) from None
    _relay_logs(proc.stderr)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {}
    if proc.returncode == 0 and "path" in result:
        return _answered(result, index_path(index_dir, expected.fingerprint), expected)
    if "error" in result:
        raise (TransientListError if result.get("may_pass") else ListSourceError)(result["error"])
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    # No answer at all: killed (out of memory?) or crashed; worth another try later.
    raise TransientListError(f"building the list index failed: {tail[0]}")


def _answered(result: dict[str, Any], target: Path, expected: Expected) -> tuple[Path, Expected]:
    """The builder's answer, if it is about the index it was asked for: the entry counts
    it built are then expected of the file opened (a file swapped in meanwhile is not it)."""
    try:
        path = Path(result["path"])
        counts = result["counts"]
        built = replace(expected, counts=(int(counts[0]), int(counts[1]), int(counts[2])))
    except (KeyError, TypeError, ValueError, IndexError):
        path, built = Path(), expected
    if path != target or result.get("fingerprint") != expected.fingerprint:
        raise TransientListError(
            f"the index builder answered {str(result)[:300]}, not about {target}"
        )
    return path, built


def _relay_logs(stderr: str) -> None:
    """Re-emit the builder's log records through this process's logging."""
    for line in stderr.splitlines():
        try:
            rec = json.loads(line)
            logging.getLogger(rec["name"]).log(rec["level"], "%s", rec["msg"])
        except (ValueError, KeyError, TypeError):
            if line.strip():
                logger.warning("index builder: %s", line)
