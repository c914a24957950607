"""Smoke test of the benchmarks (scripts/bench)."""
