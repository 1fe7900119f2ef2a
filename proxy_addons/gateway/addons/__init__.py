"""The gateway's mitmproxy add-ons, one class per module, in chain order in chain.py."""
