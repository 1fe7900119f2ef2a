"""The doctor in a development checkout: no /etc/schoolgate, so it checks what `make run`
uses (policies/school.yaml and var/ in the checkout) and skips what only an installation
has (the service user, root-owned configuration, the firewall). A CA or store not made yet
is a WARN there: the first `make run` creates both."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from pathlib import Path

from proxy_addons.ops.doctor.findings import Check, Level, ok, warn

CHECKOUT_POLICY = Path("policies/school.yaml")
# Checks that are about an installed service, not a checkout.
INSTALL_ONLY = frozenset({"permissions", "firewall"})


def find_checkout(folder: Path) -> Path | None:
    """The checkout `folder` is (it holds policies/school.yaml and pyproject.toml), or None."""
    root = folder.resolve()
    if (root / CHECKOUT_POLICY).is_file() and (root / "pyproject.toml").is_file():
        return root
    return None


def checkout_values(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The settings `make run` runs with in `root` (SCHOOLGATE_* from this shell win)."""
    values = {
        "SCHOOLGATE_POLICY": str(root / CHECKOUT_POLICY),
        "SCHOOLGATE_VAR": str(root / "var"),
        "SCHOOLGATE_USER": getpass.getuser(),
        "SCHOOLGATE_LISTEN_HOST": "127.0.0.1",  # schoolgate run's default
    }
    for name, value in environ.items():
        if name.startswith("SCHOOLGATE_") and value:
            if name in ("SCHOOLGATE_POLICY", "SCHOOLGATE_VAR"):
                value = str((root / value).resolve()) if not Path(value).is_absolute() else value
            values[name] = value
    return values


def what_was_checked(root: Path | None, env_file: Path, policy: Path, var: Path) -> Check:
    """The first line: an installation's settings file, or a checkout."""
    if root is None:
        return ok("checked", f"the installation set up by {env_file}: {policy}, {var}")
    return ok(
        "checked",
        f"the development checkout {root} (there is no {env_file}): {policy}, {var}",
    )


def for_checkout(checks: list[Check]) -> list[Check]:
    """Drop the installation-only checks; what `make run` will create is a WARN."""
    kept: list[Check] = []
    for check in checks:
        if check.name in INSTALL_ONLY:
            continue
        missing = check.message.startswith(("no CA at ", "no store at "))
        if check.level is Level.FAIL and missing:
            check = warn(check.name, f"{check.message} yet", "make run (creates it on start)")
        elif check.fix.startswith("systemctl start schoolgate-web"):
            check = Check(check.name, check.level, check.message, ".venv/bin/schoolgate web")
        elif check.fix.startswith("systemctl start schoolgate"):
            check = Check(check.name, check.level, check.message, "make run")
        kept.append(check)
    return kept


__all__ = ["find_checkout", "checkout_values", "for_checkout", "what_was_checked"]
