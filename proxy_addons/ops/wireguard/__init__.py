"""The gateway's WireGuard interface for per-device tunnels (docs/offsite.md): brought up
from the policy's `devices.tunnel` (interface.py) and kept in step with the store's bindings
of keys to tunnel addresses (peers.py). `schoolgate tunnel` (cli/tunnel.py) drives both."""
