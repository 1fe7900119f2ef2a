"""One licensed illegal-tier feed, as the policy names it (`illegal.feeds`, read by
illegal_feeds.py), and the fetcher's record of it beside its list (ops/illegal_feeds/)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_FOLDER = Path("/var/lib/schoolgate/illegal")


@dataclass(frozen=True)
class IllegalFeed:
    """One licensed feed: where it comes from, how to sign in to it, what its lines are."""

    name: str
    url: str
    folder: Path
    format: Literal["plain", "hashed"] = "plain"
    match: Literal["exact", "prefix"] = "exact"  # plain lines: exact URLs or URL prefixes
    secret_file: Path | None = None  # a token, sent as "Authorization: Bearer ..."
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None  # the provider's own CA, when it isn't a public one
    checksum_url: str = ""  # a published "HEX [NAME]" SHA-256 of the list
    refresh_hours: float = 6.0
    max_age_hours: float = 24.0

    @property
    def list_file(self) -> Path:
        return self.folder / f"{self.name}.txt"

    @property
    def state_file(self) -> Path:
        """When it was last fetched, what it held, the last failure (written by the fetcher)."""
        return self.folder / f"{self.name}.json"


def read_feed_state(feed: IllegalFeed) -> dict[str, Any]:
    """The fetcher's record of a feed; {} when never fetched or unreadable."""
    try:
        data = json.loads(feed.state_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
