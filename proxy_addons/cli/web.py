"""`schoolgate web`: serve the admin web app and the device API until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server

from proxy_addons.core.policy.load import PolicyError
from proxy_addons.ops import server_cert
from proxy_addons.store import Store, store_url
from proxy_addons.web.app import create_app, create_device_api
from proxy_addons.web.https_redirect import redirect_to_https
from proxy_addons.web.serving import PolicyFile, is_loopback, read_secret_key, served_app
from proxy_addons.workflow.unblocks import UnblockWorkflow

logger = logging.getLogger(__name__)


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the admin web app until interrupted.

    Reads args.policy, args.var, args.host, args.port, and when present args.dsn, args.cert
    and args.key (serve HTTPS with them; by default with the certificate `schoolgate ca init`
    issued in VAR/tls), args.http_port (a plain-HTTP listener that only redirects to HTTPS),
    args.plain_http and args.trusted_proxies (hops of X-Forwarded-* to believe, behind an
    HTTPS reverse proxy). Cookies are always Secure: the browser must reach the app over
    HTTPS (or on its own loopback address).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    var = Path(args.var)
    try:
        policy = PolicyFile(Path(args.policy))
    except (PolicyError, OSError) as exc:
        print(f"schoolgate web cannot start: {exc}", flush=True)
        return 1
    store = Store.open(store_url(var, getattr(args, "dsn", None)))
    workflow = UnblockWorkflow(store, policy)
    admin = create_app(workflow, store, secret_key=read_secret_key(var))
    # The device API shares this process and its HTTPS server (see devices/api.py).
    proxies = int(getattr(args, "trusted_proxies", 0) or 0)
    app = served_app(admin, create_device_api(store, policy, var=var), policy, proxies)
    tls = certificate(args, var)
    if tls is None and not proxies and not is_loopback(args.host):
        logger.warning(
            "serving plain HTTP on %s: sessions only work over HTTPS; run 'schoolgate ca "
            "server-cert' (or give --cert and --key), or put an HTTPS reverse proxy in front",
            args.host,
        )
    server = make_server(args.host, int(args.port), app, threaded=True, ssl_context=tls)
    redirect = redirect_server(args, tls)
    scheme = "https" if tls else "http"
    print(f"Schoolgate web app on {scheme}://{args.host}:{args.port}", flush=True)
    # systemd stops services with SIGTERM: leave through `finally` so the store closes cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if redirect is not None:
            redirect.shutdown()
            redirect.server_close()
        store.dispose()
    return 0


def certificate(args: argparse.Namespace, var: Path) -> tuple[str, str] | None:
    """The certificate and key to serve HTTPS with: --cert/--key (SCHOOLGATE_WEB_CERT and
    _KEY), else the one `schoolgate ca init` issued in VAR/tls; None when there is neither
    (or --plain-http: behind an HTTPS reverse proxy)."""
    if getattr(args, "plain_http", False):
        return None
    cert, key = getattr(args, "cert", None), getattr(args, "key", None)
    if cert and key:
        return str(cert), str(key)
    issued, issued_key = server_cert.default_files(var)
    if issued.is_file() and issued_key.is_file():
        return str(issued), str(issued_key)
    return None


def redirect_server(args: argparse.Namespace, tls: tuple[str, str] | None) -> BaseWSGIServer | None:
    """The plain-HTTP listener on --http-port, sending every request to HTTPS (started in a
    thread); None when not asked for, or when there is no HTTPS to send anyone to."""
    port = getattr(args, "http_port", None)
    if not port:
        return None
    if tls is None:
        logger.warning("--http-port %s ignored: there is no HTTPS to redirect to", port)
        return None
    held = server_cert.describe(Path(tls[0]), Path(tls[1]))
    names = [*held.names, *held.addresses]
    redirect = make_server(
        args.host, int(port), redirect_to_https(names, int(args.port)), threaded=True
    )
    threading.Thread(target=redirect.serve_forever, name="https-redirect", daemon=True).start()
    print(f"Plain HTTP on http://{args.host}:{port} redirects to HTTPS", flush=True)
    return redirect
