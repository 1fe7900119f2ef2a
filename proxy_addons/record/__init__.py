"""What happened: access-log records, metrics and the termly monitoring report."""
