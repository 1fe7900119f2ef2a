"""Arguments shared by the `schoolgate` commands that open the policy and the store."""

from __future__ import annotations

import argparse
import os


def add_store_arguments(p: argparse.ArgumentParser, policy: str, var: str) -> None:
    p.add_argument("--policy", default=policy)
    p.add_argument("--var", default=var)
    p.add_argument(
        "--dsn",
        default=os.environ.get("SCHOOLGATE_DSN") or None,
        help="PostgreSQL DSN (default: $SCHOOLGATE_DSN, else SQLite under --var)",
    )


# Commands that make the state folder when it is not there yet (a first `make run`).
CREATES_STATE = frozenset({"run", "ca", "restore", "doctor"})


def missing_defaults(args: argparse.Namespace, policy: str, var: str) -> str | None:
    """Why the default policy file or state folder can't be used from here, or None.

    The defaults are relative to the current folder (or come from SCHOOLGATE_POLICY and
    SCHOOLGATE_VAR): run from elsewhere, a command must say so, not print a traceback or
    make an empty store in the wrong place.
    """
    wanted = (
        ("policy", policy, "policy file", "--policy FILE", "SCHOOLGATE_POLICY"),
        ("var", var, "state folder", "--var DIR", "SCHOOLGATE_VAR"),
    )
    for name, default, what, flag, env in wanted:
        value = getattr(args, name, None)
        if value != default or os.path.exists(value):
            continue
        if name == "var" and getattr(args, "command", None) in CREATES_STATE:
            continue
        if os.environ.get(env):
            where = f"(from {env})"
        else:
            where = f"(relative to the current folder, {os.getcwd()})"
        return (
            f"no {what} at {value} {where}: run schoolgate in the Schoolgate folder, "
            f"give {flag}, or set {env}"
        )
    return None
