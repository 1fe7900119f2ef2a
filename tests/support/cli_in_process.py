"""`schoolgate ...` run in the test's own process, answered as subprocess.run answers.

The same entry point as the installed command (proxy_addons.cli.main.main), with its own
standard input, output and error, and without the tester's SCHOOLGATE_ settings, as a fresh
shell has. Starting the real command costs about a second of a loaded test machine (a new
Python, the project's imports); a test that runs a dozen commands to reach a state uses this,
and every command keeps at least one test through the real executable.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

from proxy_addons.cli import main as cli


def schoolgate(
    *args: str, input: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `schoolgate ARGS...` (in `cwd`, if given, as subprocess.run's cwd); a bug's
    traceback goes to stderr with exit status 1."""
    out, err = io.StringIO(), io.StringIO()
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SCHOOLGATE_")}
    stdin, sys.stdin = sys.stdin, io.StringIO(input)
    try:
        with (
            contextlib.chdir(cwd or os.getcwd()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse's usage errors, as the real command exits
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.stdin = stdin
        os.environ.update(hidden)
    return subprocess.CompletedProcess(["schoolgate", *args], code, out.getvalue(), err.getvalue())
