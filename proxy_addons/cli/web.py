"""`schoolgate web`: serve the admin web app and the device API until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from werkzeug.serving import make_server

from proxy_addons.core.policy.load import PolicyError
from proxy_addons.store import Store, store_url
from proxy_addons.web.app import create_app, create_device_api
from proxy_addons.web.serving import PolicyFile, is_loopback, read_secret_key, served_app
from proxy_addons.workflow.unblocks import UnblockWorkflow

logger = logging.getLogger(__name__)


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the admin web app until interrupted.

    Reads args.policy, args.var, args.host, args.port, and when present args.dsn, args.cert
    and args.key (serve HTTPS directly) and args.trusted_proxies (hops of X-Forwarded-* to
    believe, behind an HTTPS reverse proxy). Cookies are always Secure: the browser must reach
    the app over HTTPS (or on its own loopback address).
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
    cert, key = getattr(args, "cert", None), getattr(args, "key", None)
    tls = (str(cert), str(key)) if cert and key else None
    if tls is None and not proxies and not is_loopback(args.host):
        logger.warning(
            "serving plain HTTP on %s: sessions only work over HTTPS; give a certificate "
            "or put an HTTPS reverse proxy in front",
            args.host,
        )
    server = make_server(args.host, int(args.port), app, threaded=True, ssl_context=tls)
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
        store.dispose()
    return 0
