"""Neutral file helpers used by every feature (merge, training, nodes): atomic outputs, folder-bound
paths and whole-file hashes. Imports no feature package."""
