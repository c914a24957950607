"""Audio queued while a session opened must not delay every later end of speech.

A satellite streams from the wake word on; until the session is open and the turn
started, its audio waits in a queue, and arrives at the microphone track in one go. A
track that paced that backlog out at real time would send every later frame late by
the set-up time, and the service's VAD would hear each end of speech that much later.
"""

from __future__ import annotations

import asyncio
import math
import struct
from typing import TYPE_CHECKING

import pytest

from custom_components.itannix.realtime import (
    ItanniXClient,
    MicrophoneTrack,
    RealtimeSession,
)

if TYPE_CHECKING:
    from tests.emulator import Emulator

RATE = 16_000
CHUNK = 320  # 20 ms at 16 kHz, as a satellite streams


class FakeClock:
    """A clock the test advances; sleep() advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay


def tone(seconds: float, amp: int = 8000) -> bytes:
    count = int(RATE * seconds)
    return struct.pack(
        f"<{count}h",
        *(int(amp * math.sin(2 * math.pi * 300 * i / RATE)) for i in range(count)),
    )


def silence(seconds: float) -> bytes:
    return bytes(2 * int(RATE * seconds))


def rms(frame_pcm: bytes) -> float:
    samples = struct.unpack(f"<{len(frame_pcm) // 2}h", frame_pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


class Satellite:
    """Feeds ``pcm`` to the track: ``backlog`` seconds at once, the rest in real time."""

    def __init__(self, mic: MicrophoneTrack, clock: FakeClock, pcm: bytes) -> None:
        self.mic = mic
        self.clock = clock
        self.pcm = pcm
        self.fed = 0  # bytes
        self.start = clock.now

    def catch_up_to(self, seconds: float) -> None:
        """Feed everything the satellite had produced ``seconds`` after it started."""
        end = min(len(self.pcm), int(RATE * seconds) * 2)
        while self.fed + 2 * CHUNK <= end:
            self.mic.feed(self.pcm[self.fed : self.fed + 2 * CHUNK])
            self.fed += 2 * CHUNK


async def run(
    mic: MicrophoneTrack, clock: FakeClock, pcm: bytes, backlog: float, seconds: float
) -> list[float]:
    """Stream ``pcm`` after ``backlog`` s of set-up; return each sent frame's RMS."""
    satellite = Satellite(mic, clock, pcm)
    satellite.catch_up_to(backlog)  # queued during set-up, arrives at once
    turn_start = clock.now
    sent: list[float] = []
    while clock.now - turn_start < seconds:
        satellite.catch_up_to(backlog + clock.now - turn_start)
        frame = await mic.recv()
        sent.append(rms(bytes(frame.planes[0])[: frame.samples * 2]))
    return sent


@pytest.mark.parametrize("backlog", [0.5, 1.5, 3.0])
async def test_set_up_backlog_is_caught_up(backlog: float) -> None:
    """After 5 s, what leaves the track is at most 0.1 s behind the satellite."""
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    await run(mic, clock, tone(10.0), backlog, 5.0)
    # The lag is the fed audio still waiting to leave (counted in frames).
    assert mic.buffered_seconds <= 0.1
    mic.stop()


async def test_catching_up_keeps_all_speech() -> None:
    """Continuous speech is sent faster for a while, none of it dropped."""
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    sent = await run(mic, clock, tone(10.0), 1.5, 5.0)
    voiced_out = sum(1 for value in sent if value > 1000)
    # Every voiced frame fed so far left, but for the (small) remaining queue.
    fed_frames = round((1.5 + 5.0) / 0.020)
    waiting = round(mic.buffered_seconds / 0.020)
    assert voiced_out + waiting >= fed_frames - 2
    assert mic.voiced_frames_sent == voiced_out
    mic.stop()


async def test_catching_up_drops_long_silence_first() -> None:
    """A queued silence is shortened, but an utterance still ends in silence."""
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    # The user waited 2 s after the wake word, spoke 1 s, paused 2 s, spoke 1 s.
    pcm = silence(2.0) + tone(1.0) + silence(2.0) + tone(1.0) + silence(4.0)
    sent = await run(mic, clock, pcm, 2.5, 5.0)
    voiced = [value > 1000 for value in sent]
    assert sum(voiced) >= 98  # both utterances, whole (50 frames each, give or take)
    # The pause between them still lasts longer than a VAD's end of speech (0.5 s).
    first_end = voiced.index(True) + voiced[voiced.index(True) :].index(False)
    pause = voiced[first_end:].index(True)
    assert pause * 0.020 >= 0.5
    # And the backlog is gone: the second utterance left on time or early.
    assert mic.buffered_seconds <= 0.1
    mic.stop()


async def test_no_backlog_no_change() -> None:
    """A satellite streaming in step with the track is sent one frame per 20 ms."""
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    start = clock.now
    sent = await run(mic, clock, tone(3.0), 0.0, 2.0)
    # 2 s of wall time: 100 frames (and the one due as the window closes).
    assert 100 <= len(sent) <= 102
    assert clock.now - start == pytest.approx(2.0, abs=0.041)
    assert mic.skipped_frames == 0
    mic.stop()


async def test_speech_queued_during_set_up_ends_on_time(
    client: ItanniXClient, emulator: Emulator, speech_pcm16k: bytes
) -> None:
    """The user spoke while the session opened: the service hears the end promptly.

    The backlog (3 s the user waited after the wake word, then the request) reaches
    the turn at once, as Home Assistant hands over a satellite's queued stream; the
    satellite then streams silence in real time. Paced out at real time, the end of
    speech would reach the emulator's VAD only after the whole backlog (about 5 s);
    caught up, it comes in about 2 s. Counted in 20 ms chunks the satellite sent.
    """
    session = await RealtimeSession.open(client)
    try:
        turn = await session.start_audio_turn()
        turn.feed_audio(silence(3.0) + speech_pcm16k)
        chunks = 0
        async with asyncio.timeout(30):
            while not turn.speech_stopped.is_set():
                turn.feed_audio(silence(0.020))
                chunks += 1
                await asyncio.sleep(0.020)
        assert chunks * 0.020 < 3.5
        # All of the speech was sent: the VAD heard as much voice as there is.
        voiced = sum(
            1
            for i in range(0, len(speech_pcm16k) - 639, 640)
            if rms(speech_pcm16k[i : i + 640]) >= 500
        )
        assert emulator.sessions[-1].inbound_voiced_ms >= 0.8 * voiced * 20
    finally:
        await session.close()
