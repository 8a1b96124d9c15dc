"""Helpers the tests and the benchmark share (test data, for now)."""
