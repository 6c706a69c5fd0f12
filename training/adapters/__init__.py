"""Adapters from concrete model objects to the trainer's protocols (protocols.py)."""
