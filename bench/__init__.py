"""Benchmarks that print JSON figures (not timed tests)."""
