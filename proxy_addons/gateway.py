"""The gateway's add-ons, in order. Also a mitmdump script:

mitmdump -s proxy_addons/gateway.py --set schoolgate_policy=policies/school.yaml
"""

from __future__ import annotations

from proxy_addons.access_log import AccessLog
from proxy_addons.alerting import Alerting
from proxy_addons.filtering import Filter
from proxy_addons.metrics_addon import Metrics
from proxy_addons.portal import Portal


def gateway_addons() -> list[object]:
    gate = Filter()
    return [gate, AccessLog(gate), Alerting(gate), Portal(gate), Metrics(gate)]


addons = gateway_addons()
