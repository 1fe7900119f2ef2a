"""The gateway's add-ons, in order. Also a mitmdump script:

mitmdump -s proxy_addons/gateway.py --set schoolgate_policy=policies/school.yaml
"""

from __future__ import annotations

from proxy_addons.filtering import Filter
from proxy_addons.portal import Portal


def gateway_addons() -> list[object]:
    gate = Filter()
    return [gate, Portal(gate)]


addons = gateway_addons()
