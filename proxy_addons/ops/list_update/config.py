"""list-updates.yaml: the archives `schoolgate lists update` fetches, read into typed settings.

Light on purpose (yaml only): the CLI's parser names CONFIG_NAME without loading the updater."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

CONFIG_NAME = "list-updates.yaml"  # beside the policy
STATUS_FILE = Path("run") / "lists-update.json"


class UpdateError(Exception):
    """The update was refused or failed; the lists in use were kept. The message says why."""


@dataclass(frozen=True)
class Archive:
    url: str
    into: Path
    top: str = ""
    sha256: str = ""
    checksums: str = ""


@dataclass(frozen=True)
class UpdateConfig:
    path: Path
    archives: tuple[Archive, ...]
    min_fraction: float = 0.5


def load_config(path: Path) -> UpdateConfig:
    """Read list-updates.yaml; errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UpdateError(f"{path}: can't read it: {exc}") from None
    if not isinstance(data, dict):
        raise UpdateError(f"{path}: expected a mapping with 'archives'")
    raw = data.get("archives") or []
    if not isinstance(raw, list):
        raise UpdateError(f"{path}: 'archives' must be a list")
    archives = []
    for n, item in enumerate(raw, 1):
        where = f"{path}: archives[{n}]"
        if not isinstance(item, dict) or not item.get("url") or not item.get("into"):
            raise UpdateError(f"{where}: needs 'url' and 'into'")
        url = str(item["url"])
        if urlparse(url).scheme not in ("http", "https", "file"):
            raise UpdateError(f"{where}: url must be http(s):// or file://, not {url!r}")
        raw_sha = item.get("sha256", "")
        if not isinstance(raw_sha, str):  # YAML reads an all-digit value as a number
            raise UpdateError(f"{where}: sha256 must be a quoted string of 64 hex digits")
        sha = raw_sha.lower()
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise UpdateError(f"{where}: sha256 must be 64 hex digits")
        archives.append(
            Archive(
                url=url,
                into=(path.parent / str(item["into"])),
                top=str(item.get("top") or "").strip("/"),
                sha256=sha,
                checksums=str(item.get("checksums") or ""),
            )
        )
    fraction = data.get("min_fraction", 0.5)
    if not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        raise UpdateError(f"{path}: min_fraction must be a number from 0 to 1")
    return UpdateConfig(path, tuple(archives), float(fraction))
