"""The proxy auto-config file (PAC, also served as WPAD's wpad.dat), built from the policy.

Browsers run `FindProxyForURL(url, host)` for every request. The answer here:
DIRECT for plain host names (intranet servers), the gateway itself, loopback,
link-local and private addresses and the school's own networks; the gateway
(`PROXY host:port`) for everything else, including the portal host (which only
the gateway answers). There is deliberately no "; DIRECT" fall-back: if the
gateway is down, browsing stops rather than going out unfiltered.

Private networks are matched only when the host is written as an address:
`isInNet()` on a name would make the browser look the name up in DNS for every
request (slow, and it leaks the name before the proxy decides on it).
"""

from __future__ import annotations

import ipaddress
import json
import re

from proxy_addons.core.policy.model import Policy

CONTENT_TYPE = "application/x-ns-proxy-autoconfig"
PATHS = ("/proxy.pac", "/wpad.dat")

# Always direct: loopback, RFC 1918, link-local, carrier-grade NAT.
LOCAL_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
)
LOCAL_V6_PREFIXES = ("::1", "fc", "fd", "fe80:")

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class ProxyAddressError(ValueError):
    """`school.proxy_address` is not "host:port"."""


def parse_proxy_address(text: str) -> str:
    """Checks "host:port" (a DNS name, IPv4 or [IPv6]) and returns it in lower case."""
    value = text.strip().lower()
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProxyAddressError(
            f"proxy_address '{text}' should be the gateway's host and port, "
            "e.g. gateway.school.lan:8080"
        )
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        if bare != host or not _HOST.match(host):
            raise ProxyAddressError(
                f"proxy_address '{text}': '{host}' is not a host name or address"
            ) from None
    return f"{host}:{int(port)}"


def proxy_host(address: str) -> str:
    host = address.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def direct_networks(policy: Policy) -> list[ipaddress.IPv4Network]:
    """IPv4 networks answered DIRECT: the local ranges and the school's own networks."""
    found: list[ipaddress.IPv4Network] = list(LOCAL_V4)
    school = [net for net, _profile in policy.identities.networks]
    network = getattr(policy, "network", None)  # client networks, when the policy names them
    if network is not None:
        school += list(network.client_networks)
    for net in school:
        if isinstance(net, ipaddress.IPv4Network) and not any(
            net.subnet_of(known) for known in found
        ):
            found.append(net)
    return found


def build(policy: Policy, proxy: str) -> str:
    """The PAC script for devices reaching the gateway at `proxy` ("host:port")."""
    gateway = proxy_host(proxy)
    nets = "\n".join(
        f"    [{json.dumps(str(n.network_address))}, {json.dumps(str(n.netmask))}],"
        for n in direct_networks(policy)
    )
    v6 = ", ".join(json.dumps(p) for p in LOCAL_V6_PREFIXES)
    return f"""// Schoolgate proxy auto-configuration for {_comment(policy.school)}.
// Served by the gateway as /proxy.pac and /wpad.dat; made from the policy.
var GATEWAY = "PROXY {proxy}";
var PORTAL = {json.dumps(policy.portal_host)};
var GATEWAY_HOST = {json.dumps(gateway)};
var DIRECT_NETS = [
{nets}
];
var DIRECT_V6 = [{v6}];

function FindProxyForURL(url, host) {{
  host = host.toLowerCase();
  if (host.charAt(0) == "[") host = host.substring(1, host.length - 1);
  if (host == PORTAL) return GATEWAY;
  if (host == GATEWAY_HOST || host == "localhost" || isPlainHostName(host)) return "DIRECT";
  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {{
    for (var i = 0; i < DIRECT_NETS.length; i++) {{
      if (isInNet(host, DIRECT_NETS[i][0], DIRECT_NETS[i][1])) return "DIRECT";
    }}
    return GATEWAY;
  }}
  if (host.indexOf(":") >= 0) {{
    for (var j = 0; j < DIRECT_V6.length; j++) {{
      if (host == DIRECT_V6[j] || host.indexOf(DIRECT_V6[j]) == 0) return "DIRECT";
    }}
  }}
  return GATEWAY;
}}
"""


def _comment(text: str) -> str:
    return text.replace("\n", " ").replace("*/", "")
