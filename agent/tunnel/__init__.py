"""The device's off-site tunnel: its keys, what the gateway tells it, and keeping it up."""
