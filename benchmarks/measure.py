"""What the benchmark measures: CPU share over a wall window, medians and p90s."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import statistics
import time


async def cpu_percent(seconds: float) -> float:
    """Return our CPU time over ``seconds`` of wall time, in % of one core.

    ``process_time()`` counts every thread of the process (aiortc encodes in the loop's
    executor and decodes in a thread of its own), and no child process.
    """
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)


def median(values: Sequence[float]) -> float:
    """The median (the machine is shared: means would follow its noise)."""
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile (the largest value when there are few)."""
    if len(values) < 2:
        return max(values)
    return statistics.quantiles(values, n=10, method="inclusive")[-1]
