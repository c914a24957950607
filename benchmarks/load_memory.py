"""Memory: many turns on one session, many sessions opened and closed.

Turns: typed turns (``RealtimeSession.ask()``, send-only as Home Assistant opens a
typed conversation) against the emulator; the baseline is the same kind of session
left open and idle for as long, so what the transport itself accumulates is not billed
to the turns. Sessions: N opened (each answering one typed turn) and closed; the
baseline is N bare aiortc peers to the bare answerer. Both report traced Python memory
(``tracemalloc``) and RSS growth, and what is still alive after ``gc.collect()``: peer
connections, our session objects (weak references), asyncio tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import gc
import os
from pathlib import Path
import time
import tracemalloc
from typing import Final
import weakref

import aiohttp
from aiortc import RTCPeerConnection

from custom_components.itannix.realtime import ItanniXClient, RealtimeSession

from .bare import BarePeer, post_offer

STEP_TIMEOUT: Final = 60.0
MIB: Final = 1024 * 1024
# Tasks ending after a close (aiortc's transports wind down) get this long.
_SETTLE_SECONDS: Final = 3.0


@dataclass(slots=True)
class Growth:
    """Memory growth over one phase."""

    traced: float  # MiB, tracemalloc's current size after - before
    rss: float  # MiB
    seconds: float  # wall time of the phase
    count: int  # turns or sessions


@dataclass(slots=True)
class Retained:
    """What outlived N closed sessions (after gc)."""

    growth: Growth
    peers_alive: int  # RTCPeerConnection objects still alive
    ours_alive: int  # our session, connection, track and sink objects still alive
    tasks_before: int
    tasks_after: int


def rss_mib() -> float:
    """Return the resident set size of this process (Linux; 0 elsewhere)."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return 0.0
    pages = int(statm.read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def _live(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def _measured(phase: Callable[[], Awaitable[int]]) -> Growth:
    gc.collect()
    traced, rss, start = tracemalloc.get_traced_memory()[0], rss_mib(), time.monotonic()
    count = await phase()
    seconds = time.monotonic() - start
    gc.collect()
    return Growth(
        traced=(tracemalloc.get_traced_memory()[0] - traced) / MIB,
        rss=rss_mib() - rss,
        seconds=seconds,
        count=count,
    )


# -- turns --------------------------------------------------------------------------


async def turns_ours(client: ItanniXClient, turns: int, warmup: int) -> Growth:
    """Growth over ``turns`` typed turns on one session (after ``warmup`` turns)."""
    session = await RealtimeSession.open(client, receive_audio=False)
    try:

        async def run() -> int:
            for i in range(turns):
                async with asyncio.timeout(STEP_TIMEOUT):
                    reply = await session.ask(f"typed turn number {i}")
                    await reply.text()
            return turns

        async with asyncio.timeout(STEP_TIMEOUT):
            for i in range(warmup):
                await (await session.ask(f"warm-up turn {i}")).text()
        return await _measured(run)
    finally:
        await session.close()


async def idle_ours(client: ItanniXClient, seconds: float) -> Growth:
    """Growth of the same kind of session left open and idle for ``seconds``."""
    session = await RealtimeSession.open(client, receive_audio=False)
    try:

        async def run() -> int:
            await asyncio.sleep(seconds)
            return 0

        return await _measured(run)
    finally:
        await session.close()


# -- sessions opened and closed -----------------------------------------------------


async def _settled_tasks(before: int) -> int:
    """The number of live tasks, once it is back to ``before`` or time ran out."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    # Polled: no event says a task of aiortc's ended.
    while len(asyncio.all_tasks()) > before and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return len(asyncio.all_tasks())


async def sessions_ours(client: ItanniXClient, count: int) -> Retained:
    """Open ``count`` sessions one after another, a typed turn each, close each."""
    refs: list[weakref.ref[object]] = []
    tasks_before = len(asyncio.all_tasks())

    async def run() -> int:
        for i in range(count):
            async with asyncio.timeout(STEP_TIMEOUT):
                session = await RealtimeSession.open(client, receive_audio=False)
                try:
                    await (await session.ask(f"session number {i}")).text()
                finally:
                    await session.close()
            connection = session.connection
            refs.extend(
                weakref.ref(obj)
                for obj in (
                    session,
                    connection,
                    connection.microphone,
                    connection.speaker,
                    connection.peer_connection,
                )
                if obj is not None
            )
            del session, connection
        return count

    growth = await _measured(run)
    tasks_after = await _settled_tasks(tasks_before)
    gc.collect()
    return Retained(
        growth=growth,
        peers_alive=_live(RTCPeerConnection),
        ours_alive=sum(1 for ref in refs if ref() is not None),
        tasks_before=tasks_before,
        tasks_after=tasks_after,
    )


async def sessions_bare(
    http: aiohttp.ClientSession, answerer_url: str, count: int
) -> Retained:
    """Open ``count`` bare peers to the answerer one after another, close each."""
    tasks_before = len(asyncio.all_tasks())

    async def run() -> int:
        for _ in range(count):
            peer = BarePeer()
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    answer = await post_offer(http, answerer_url, await peer.offer())
                    await peer.accept(answer)
                    await peer.wait_open()
            finally:
                await peer.close()
            del peer
        return count

    growth = await _measured(run)
    tasks_after = await _settled_tasks(tasks_before)
    gc.collect()
    return Retained(
        growth=growth,
        peers_alive=_live(RTCPeerConnection),
        ours_alive=0,
        tasks_before=tasks_before,
        tasks_after=tasks_after,
    )
