"""Telling people: what is worth an alert, the durable outbox and the channels that deliver it."""
