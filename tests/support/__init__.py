"""Test support code shared by the test modules (importable as `support.*`)."""
