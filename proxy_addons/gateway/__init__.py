"""The mitmproxy side: the add-on chain, the services it shares and flow helpers."""
