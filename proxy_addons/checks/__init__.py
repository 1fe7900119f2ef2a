"""Termly effectiveness checks: suites, runs, records, reminders and the governors' report."""
