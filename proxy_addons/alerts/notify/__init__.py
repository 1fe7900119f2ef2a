"""Notify channels: one small interface (`base.BaseChannel`), one module per channel, and
`from_policy`, which builds the channels a policy configures."""
