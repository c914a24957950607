"""What the benchmark measures: CPU share over a wall window, medians and p90s."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import statistics
import time
from types import SimpleNamespace

import aiohttp

from tests.network import server_time_ms


class FarEndClock:
    """Adds up the far end's own handling time of every HTTP answer (``Server-Timing``).

    Give ``trace_config`` to the ``aiohttp.ClientSession``; ``reset()`` before a set-up,
    ``ms`` after it: what the far end spent answering, network and client excluded.
    """

    def __init__(self) -> None:
        """Start at zero."""
        self.ms = 0.0
        self.trace_config = aiohttp.TraceConfig()
        self.trace_config.on_request_end.append(self._on_request_end)

    def reset(self) -> None:
        """Start counting again."""
        self.ms = 0.0

    async def _on_request_end(
        self,
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        self.ms += server_time_ms(params.response.headers)


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
