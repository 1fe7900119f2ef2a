"""The gateway's log at the default level: what an operator needs.

mitmproxy logs every connection at INFO ("client connect", "server connect
host:port", ...): four lines in five of a school's log, each with a pupil's
address or the site they went to. Those are moved to DEBUG (shown with
`--set termlog_verbosity=debug`); the access log in the store records visits.
A busy port is explained in Schoolgate's own options rather than mitmproxy's
`--mode regular@PORT`.
"""

from __future__ import annotations

import logging
import re

# mitmproxy.proxy.server's per-connection messages, exactly or by their start.
_CHATTER = re.compile(
    r"^(client connect|client disconnect|client kill connection|server connect |"
    r"server disconnect |Closing connection due to inactivity)"
)
_BUSY_HINT = re.compile(r"\n?Try specifying a different port by using `--mode [^`]*`\.")
BUSY_PORT_ADVICE = (
    "Another program is using that port (is Schoolgate already running?). Stop it, or "
    "choose another port: `schoolgate run --listen-port PORT`, or SCHOOLGATE_LISTEN_PORT "
    "in /etc/schoolgate/schoolgate.env for the service."
)


class ConnectionChatterToDebug(logging.Filter):
    """Per-connection INFO lines become DEBUG; the handlers' own levels then drop them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and _CHATTER.match(str(record.msg)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class BusyPortInOurWords(logging.Filter):
    """mitmproxy's "Try ... `--mode regular@8082`" becomes Schoolgate's options."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "address already in use" in message.lower():
            record.msg, record.args = f"{_BUSY_HINT.sub('', message)}\n{BUSY_PORT_ADVICE}", ()
        return True


def quiet_connection_logs() -> None:
    """Install the filters on mitmproxy's loggers (once per process)."""
    server = logging.getLogger("mitmproxy.proxy.server")
    if not any(isinstance(f, ConnectionChatterToDebug) for f in server.filters):
        server.addFilter(ConnectionChatterToDebug())
    proxyserver = logging.getLogger("mitmproxy.addons.proxyserver")
    if not any(isinstance(f, BusyPortInOurWords) for f in proxyserver.filters):
        proxyserver.addFilter(BusyPortInOurWords())


__all__ = ["BUSY_PORT_ADVICE", "quiet_connection_logs"]
