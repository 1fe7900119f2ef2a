"""Schoolgate's gateway, one package per purpose, in layers (see docs/architecture.md)."""
