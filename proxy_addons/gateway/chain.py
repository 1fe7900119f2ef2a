"""The gateway's add-ons, in order. Also a mitmdump script:

mitmdump -s proxy_addons/gateway/chain.py --set schoolgate_policy=policies/school.yaml

One `Services` (services.py) is made here and handed to the add-ons that need it; no
add-on takes another. A request's one pass: the Filter decides (the core's pipeline:
decide -> circumvention -> safe search) and keeps the verdict in `flow.metadata` or the
connection's state; the add-ons after it act on the verdict; the Recorder, last, settles
which verdict took effect and hands it to its sinks (access log, alert intake, metrics,
check witness).
"""

from __future__ import annotations

from proxy_addons.gateway import mitm_fixes
from proxy_addons.gateway.addons.access_log import AccessLog
from proxy_addons.gateway.addons.alerting import Alerting
from proxy_addons.gateway.addons.autoconfig import AutoConfig
from proxy_addons.gateway.addons.check_marker import CheckMarker
from proxy_addons.gateway.addons.check_witness import CheckWitness, VerdictWitness
from proxy_addons.gateway.addons.circumvention import Circumvention
from proxy_addons.gateway.addons.client_access import ClientAccess
from proxy_addons.gateway.addons.content_filter import ContentFiltering
from proxy_addons.gateway.addons.filter import Filter
from proxy_addons.gateway.addons.illegal_watch import IllegalTierWatch
from proxy_addons.gateway.addons.lifecycle import Lifecycle
from proxy_addons.gateway.addons.metrics import Metrics
from proxy_addons.gateway.addons.option_guard import OptionGuard
from proxy_addons.gateway.addons.portal import Portal
from proxy_addons.gateway.addons.recorder import Recorder
from proxy_addons.gateway.addons.safe_search import SafeSearchEnforcer
from proxy_addons.gateway.addons.state_health import StateHealth
from proxy_addons.gateway.addons.transparent_sign_in import TransparentSignIn
from proxy_addons.gateway.addons.upstream_guard import UpstreamGuard
from proxy_addons.gateway.services import Services
from proxy_addons.record.decision_metrics import DecisionMetrics


def gateway_addons(services: Services | None = None) -> list[object]:
    mitm_fixes.install()  # connections ended by a hook are closed (mitm_fixes.py)
    services = services or Services()
    sinks = (
        services.access_log,
        services.alert_intake,
        DecisionMetrics(),
        VerdictWitness(services.probes),
    )
    return [
        Lifecycle(services),  # first: opens the policy and store the others use; runs the jobs
        ClientAccess(services),  # a connection from outside the client networks goes no further
        TransparentSignIn(),  # transparent clients can't sign in to a proxy they don't know of
        AutoConfig(services),  # before the filter: PAC/WPAD are the gateway's own answers
        Filter(services),  # decides: the verdict, acted on (block page, refusal, pass-through)
        UpstreamGuard(),  # never upstream to the gateway itself, whatever a name says
        Circumvention(services),  # tunnels, known by their first bytes: closed
        SafeSearchEnforcer(services),  # the verdict's rewrite and steering
        CheckMarker(services),  # browser-check canaries: no monitoring alerts
        AccessLog(services),  # the access log's writer
        Alerting(services),  # the outbox, risk phrases for the alert intake, page scans
        ContentFiltering(services),  # after alerting's risk scan of the page
        Portal(services),
        Metrics(services),
        StateHealth(services),  # damaged or lost state: checks, retries, alerts
        IllegalTierWatch(services),  # the illegal tier current and real: alert, reload
        CheckWitness(services),  # it only looks, at the answers as finally sent
        Recorder(services, sinks),  # last: which verdict took effect, to the sinks
    ]


addons = [*gateway_addons(), OptionGuard()]  # last: checks `--set` values (option_guard.py)
