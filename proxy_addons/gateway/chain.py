"""The gateway's add-ons, in order. Also a mitmdump script:

mitmdump -s proxy_addons/gateway/chain.py --set schoolgate_policy=policies/school.yaml
"""

from __future__ import annotations

from proxy_addons.gateway import mitm_fixes
from proxy_addons.gateway.addons.access_log import AccessLog
from proxy_addons.gateway.addons.alerting import Alerting
from proxy_addons.gateway.addons.autoconfig import AutoConfig
from proxy_addons.gateway.addons.check_marker import CheckMarker
from proxy_addons.gateway.addons.check_witness import CheckWitness
from proxy_addons.gateway.addons.circumvention import Circumvention
from proxy_addons.gateway.addons.client_access import ClientAccess
from proxy_addons.gateway.addons.content_filter import ContentFiltering
from proxy_addons.gateway.addons.filter import Filter
from proxy_addons.gateway.addons.metrics import Metrics
from proxy_addons.gateway.addons.option_guard import OptionGuard
from proxy_addons.gateway.addons.portal import Portal
from proxy_addons.gateway.addons.safe_search import SafeSearchEnforcer
from proxy_addons.gateway.addons.state_health import StateHealth
from proxy_addons.gateway.addons.termly_checks import TermlyChecks
from proxy_addons.gateway.addons.transparent_sign_in import TransparentSignIn
from proxy_addons.gateway.addons.upstream_guard import UpstreamGuard


def gateway_addons() -> list[object]:
    mitm_fixes.install()  # connections ended by a hook are closed (mitm_fixes.py)
    gate = Filter()
    witness = CheckWitness(gate)  # last: it only looks, at the answers as finally sent
    access, alerting = AccessLog(gate), Alerting(gate)
    return [
        ClientAccess(gate),  # first: a connection from outside the client networks goes no further
        TransparentSignIn(),  # transparent clients can't sign in to a proxy they don't know of
        AutoConfig(gate),  # before the filter: PAC/WPAD are the gateway's own answers
        gate,
        UpstreamGuard(),  # never upstream to the gateway itself, whatever a name says
        Circumvention(gate),  # right after the Filter: their blocks replace its record
        SafeSearchEnforcer(gate),
        CheckMarker(gate, witness.book),  # browser-check canaries: no monitoring alerts
        access,
        alerting,
        ContentFiltering(gate, access, alerting),  # after alerting's risk scan of the page
        Portal(gate, witness.book),
        Metrics(gate),
        StateHealth(gate, access, alerting),  # damaged or lost state: checks, retries, alerts
        TermlyChecks(gate),  # reminders when a term's filtering check is due
        witness,
    ]


addons = [*gateway_addons(), OptionGuard()]  # last: checks `--set` values (option_guard.py)
