"""`retention:`: how long each table holding personal data is kept, in days.

The access log's retention stays `monitoring.retention_days`; everything else a person can
be named in (alerts, incidents, reports, unblocks, check records, devices seen on the
network, web sessions, device reports) is named here, with defaults a school's records
policy can change.
The daily totals hold no personal data and are kept for the governors' trends.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from proxy_addons.core.policy.checker import Checker, empty_map
from proxy_addons.core.policy.model import Retention
from proxy_addons.core.policy.yaml_reader import Where

DEFAULTS = Retention()
KEYS = [f.name for f in fields(Retention)]


def load_retention(ck: Checker, raw: Any, where: Where) -> Retention:
    m = ck.mapping(raw, where, "retention", KEYS)
    m = m if m is not None else empty_map(where)
    return Retention(**{key: ck.whole(m, key, getattr(DEFAULTS, key), 1, 36500) for key in KEYS})
