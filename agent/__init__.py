"""Schoolgate's device agent: checks this device and the filter from it, reports to the gateway."""
