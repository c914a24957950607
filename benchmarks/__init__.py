"""Benchmarks of the realtime library against bare aiortc peers (``scripts/bench``)."""
