"""What every benchmark's ``main`` does: run, stop helpers on a signal, print."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import signal
import sys


async def _cancelled_by_sigterm[R](measure: Awaitable[R]) -> R:
    # SIGTERM cancels the run like Ctrl-C does, so every helper process is stopped.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await measure
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run_and_print[O, R](
    measure: Callable[[O], Awaitable[R]],
    table: Callable[[O, R], str],
    options: O,
) -> None:
    """Measure with ``options``, then print the table (exit 130 when interrupted)."""
    try:
        results = asyncio.run(_cancelled_by_sigterm(measure(options)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("interrupted: helper processes stopped\n")
        sys.exit(130)
    sys.stdout.write(table(options, results) + "\n")
