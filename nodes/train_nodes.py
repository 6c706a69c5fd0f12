"""Placeholder: filled in by its area."""

NODES = []
