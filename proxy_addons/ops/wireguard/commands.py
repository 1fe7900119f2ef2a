"""How the WireGuard code runs `ip`, `wg` and `wireguard-go`: argv lists, a timeout, never a
shell. A prefix runs them elsewhere (tests: `ip netns exec <namespace>`), and a failure is a
`WireGuardError` that names the command, what it said, and what to install when it is missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# What provides each program (Debian package names).
PACKAGES = {"wg": "wireguard-tools", "wireguard-go": "wireguard-go", "ip": "iproute2"}


class WireGuardError(RuntimeError):
    """A WireGuard step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Commands:
    """Runs the interface's commands, after `prefix` if any."""

    prefix: tuple[str, ...] = ()
    timeout: float = 15.0

    def run(
        self, argv: Sequence[str], *, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = [*self.prefix, *argv]
        try:
            proc = subprocess.run(
                full, capture_output=True, text=True, timeout=self.timeout, input=input, check=False
            )
        except FileNotFoundError:
            package = PACKAGES.get(argv[0], argv[0])
            raise WireGuardError(
                f"'{argv[0]}' is not installed: apt-get install {package}"
            ) from None
        except subprocess.TimeoutExpired:
            raise WireGuardError(f"'{' '.join(argv)}' took over {self.timeout:.0f} s") from None
        if check and proc.returncode != 0:
            raise WireGuardError(f"'{' '.join(argv)}' failed: {said(proc)}")
        return proc


def said(proc: subprocess.CompletedProcess[str]) -> str:
    """The first line a failed command wrote, or its exit status."""
    for line in (proc.stderr or proc.stdout or "").splitlines():
        if line.strip() and not line.startswith(("┌", "│", "└")):  # wireguard-go's banner
            return line.strip()[:200]
    return f"exit status {proc.returncode}"


__all__ = ["PACKAGES", "Commands", "WireGuardError", "said"]
