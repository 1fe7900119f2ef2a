"""Staff work: temporary unblocks, the audit trail, accounts and sessions."""
