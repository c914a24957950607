"""Microphone backlog: audio that waited while the session opened, and what it costs.

A satellite streams from the wake word on. Home Assistant reads that stream only once
the session is open and the turn started, so what the satellite said meanwhile reaches
the microphone track in one go. Measured here: a satellite producing an utterance and a
pause in a loop, in real time, from before the session opens (the backlog) or from
the turn's start (the baseline); after a few seconds, how far behind the satellite the
audio leaving the track is, and how late the emulator's VAD reports each end of speech
(``input_audio_buffer.speech_stopped`` at the client, after the real end of speech; the
VAD itself waits for 500 ms of silence).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from custom_components.itannix.realtime import ItanniXClient, RealtimeSession

from .sources import CHUNK_SECONDS, MIC_RATE

STEP_TIMEOUT: Final = 60.0
# An end of speech is counted when its speech_stopped had this long to arrive.
_REPORT_WINDOW: Final = 2.0


@dataclass(slots=True)
class BacklogSample:
    """One stream: its backlog, the lag after ``lag_at`` s, end-of-speech delays."""

    backlog: float  # seconds of audio queued when the turn started
    lag: float  # seconds the track was behind the satellite, ``lag_at`` s in
    # speech_stopped - the real end of speech (s), for ends from ``lag_at`` s on
    late: list[float] = field(default_factory=list)
    skipped: int = 0  # silent frames the track dropped to catch up


@dataclass(frozen=True, slots=True)
class Utterances:
    """Speech then a pause, looped: when each end of speech is."""

    pcm: bytes  # 16 kHz mono s16, one cycle
    speech_seconds: float
    cycle_seconds: float

    @classmethod
    def make(cls, speech: bytes, speech_seconds: float, pause: float) -> Utterances:
        """Cut ``speech`` to ``speech_seconds``, follow it with ``pause`` of silence."""
        size = int(CHUNK_SECONDS * MIC_RATE) * 2
        cut = speech[: int(speech_seconds * MIC_RATE) * 2]
        cut = cut[: len(cut) // size * size]
        silence = bytes(int(pause * MIC_RATE) * 2 // size * size)
        return cls(
            cut + silence, len(cut) / (2 * MIC_RATE), (len(cut) + len(silence)) / 32_000
        )

    def end_of_speech(self, index: int) -> float:
        """Seconds from the stream's start to the end of utterance ``index``."""
        return index * self.cycle_seconds + self.speech_seconds


class _Satellite:
    """Produces the utterances in 20 ms chunks on a wall-clock schedule, into a queue."""

    def __init__(self, utterances: Utterances) -> None:
        size = int(CHUNK_SECONDS * MIC_RATE) * 2
        pcm = utterances.pcm
        self._chunks = [pcm[i : i + size] for i in range(0, len(pcm), size)]
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.started_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sent = 0
        while True:
            self.queue.put_nowait(self._chunks[sent % len(self._chunks)])
            sent += 1
            delay = self.started_at + sent * CHUNK_SECONDS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _pump(satellite: _Satellite, session: RealtimeSession) -> None:
    # What Home Assistant's STT stage does: read the stream, feed the turn.
    while True:
        session.feed_audio(await satellite.queue.get())


async def backlog_sample(
    client: ItanniXClient,
    utterances: Utterances,
    *,
    wait: float,
    lag_at: float,
    seconds: float,
) -> BacklogSample:
    """Stream for ``seconds`` after the turn started; ``wait`` > 0: start that early.

    ``wait`` stands in for a set-up slower than loopback's (the satellite already
    streams while it passes); the loopback set-up itself adds to the backlog.
    """
    loop = asyncio.get_running_loop()
    satellite = _Satellite(utterances)
    stopped: list[float] = []

    def on_event(event: Mapping[str, Any]) -> None:
        if event.get("type") == "input_audio_buffer.speech_stopped":
            stopped.append(loop.time())

    session: RealtimeSession | None = None
    pump: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(STEP_TIMEOUT + wait + seconds):
            if wait > 0:
                satellite.start()
                await asyncio.sleep(wait)
            session = await RealtimeSession.open(client, detach_idle_microphone=False)
            session.connection.add_listener(on_event)
            await session.start_audio_turn()
            turn_start = loop.time()
            if wait <= 0:
                satellite.start()
            backlog = satellite.queue.qsize() * CHUNK_SECONDS
            pump = loop.create_task(_pump(satellite, session))
            await asyncio.sleep(lag_at)
            mic = session.connection.microphone
            lag = mic.buffered_seconds + satellite.queue.qsize() * CHUNK_SECONDS
            await asyncio.sleep(max(0.0, seconds - lag_at))
            # getattr: the same benchmark measures a track without catch-up too.
            skipped = getattr(mic, "skipped_frames", 0)
            sample = BacklogSample(backlog=backlog, lag=lag, skipped=skipped)
            sample.late = _lateness(
                utterances,
                satellite.started_at,
                (turn_start + lag_at, turn_start + seconds - _REPORT_WINDOW),
                stopped,
            )
            return sample
    finally:
        await satellite.stop()
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        if session is not None:
            await session.close()


def _lateness(
    utterances: Utterances,
    started_at: float,
    ends: tuple[float, float],
    stopped: list[float],
) -> list[float]:
    """For each utterance ending within ``ends``: its first speech_stopped after it."""
    late = []
    index = 0
    while (end := started_at + utterances.end_of_speech(index)) < ends[1]:
        after = [t for t in stopped if end <= t < end + utterances.cycle_seconds]
        if end >= ends[0] and after:
            late.append(after[0] - end)
        index += 1
    return late
