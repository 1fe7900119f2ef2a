"""Trying a suite's URLs through the running gateway, as one profile (`schoolgate checks run`).

Each case's URL is fetched through the gateway's proxy port exactly as a device's browser
would (CONNECT and TLS through the school's CA for https), with the check header
(`checks/identity.py`) so the gateway applies the profile being checked. What came back is
judged by the shared `agent.check_suite` functions, so a gateway run and a browser run agree.
"""

from __future__ import annotations

import platform
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.check_suite import CheckCase, Observation, observe_error, observe_response
from proxy_addons.checks.identity import CHECK_HEADER, header_value
from proxy_addons.checks.records import CaseResult, result_for

BODY_LIMIT = 200_000  # enough of a page to find the block page's or an engine's markers
USER_AGENT = "Schoolgate-Check/1 (termly filtering check)"


@dataclass(frozen=True)
class GatewayTarget:
    proxy: str  # e.g. http://127.0.0.1:8080
    ca: Path | None  # the school's CA certificate (PEM), to trust decrypted pages
    profile: str
    token: str  # from <var>/check-token
    timeout: float = 10.0
    # With proxy sign-in on, any account may carry the check; the header still sets the profile.
    proxy_auth: tuple[str, str] | None = None


def _client(target: GatewayTarget) -> httpx.Client:
    verify: ssl.SSLContext | bool = True
    if target.ca is not None:
        verify = ssl.create_default_context(cafile=str(target.ca))
    proxy = httpx.Proxy(
        target.proxy,
        auth=target.proxy_auth,
        headers={CHECK_HEADER: header_value(target.profile, target.token)},
    )
    return httpx.Client(
        proxy=proxy,
        verify=verify,
        timeout=target.timeout,
        follow_redirects=True,
        max_redirects=5,
        trust_env=False,  # only the gateway named, never a proxy from the environment
        headers={"User-Agent": USER_AGENT},
    )


def try_case(client: httpx.Client, case: CheckCase, timeout: float) -> Observation:
    """Fetch one case's URL through the gateway and say what was seen."""
    try:
        with client.stream("GET", case.url) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= BODY_LIMIT:
                    break
            return observe_response(
                str(response.url), response.status_code, dict(response.headers), body
            )
    except httpx.ProxyError as exc:
        text = str(exc) or type(exc).__name__
        if "407" in text:
            return observe_error("the gateway asked for proxy sign-in (407): use --proxy-user")
        if "403" in text:  # the gateway refused the CONNECT: its plain-text block
            return Observation(
                403, True, None, None, None, f"CONNECT refused by the gateway ({text})"
            )
        return observe_error(f"proxy error: {text}")
    except httpx.TimeoutException:
        return observe_error(f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return observe_error(str(exc) or type(exc).__name__)


def run_cases(
    target: GatewayTarget,
    cases: Sequence[CheckCase],
    on_result: Callable[[CheckCase, CaseResult], None] | None = None,
) -> tuple[CaseResult, ...]:
    """Every case in turn (one at a time: a check must not look like an attack)."""
    out = []
    with _client(target) as client:
        for case in cases:
            result = result_for(case, try_case(client, case, target.timeout))
            out.append(result)
            if on_result is not None:
                on_result(case, result)
    return tuple(out)


def this_machine() -> dict[str, str]:
    """Device fields for a run from the gateway itself."""
    return {
        "device_id": socket.gethostname()[:64],
        "device_type": "gateway",
        "os": f"{platform.system()} {platform.release()}"[:100],
        "browser": f"schoolgate checks run (httpx {httpx.__version__})",
    }


__all__ = ["GatewayTarget", "run_cases", "this_machine", "try_case"]
