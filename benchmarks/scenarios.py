"""The measurements, each ours and its bare-aiortc baseline, one sample per call.

Our side runs the library as the integration does (``RealtimeConnection`` /
``RealtimeSession`` against the emulator); the baseline runs plain aiortc peers of the
same shape (an audio track both ways and the data channel), with nothing of ours.
"""

from __future__ import annotations

from array import array
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
import math
import time
from typing import Any, Final

import aiohttp

from custom_components.itannix.realtime import (
    AudioTurn,
    ItanniXClient,
    RealtimeConnection,
    RealtimeSession,
)

from .bare import BarePeer, post_offer
from .measure import FarEndClock, cpu_percent
from .sources import RealTimeFeeder

# Bounds every wait, so a stuck peer fails the benchmark instead of hanging it.
STEP_TIMEOUT: Final = 30.0
# Half the emulator's VAD threshold (RMS 500, as int16): heard as room sound, not speech.
QUIET_RMS: Final = 250.0
# The emulator speaks at most 0.3 s per word (its tone; espeak-ng is slower).
_SECONDS_PER_WORD: Final = 0.3
_TEXT: Final = (
    "the quick brown fox jumps over the lazy dog while the kitchen light stays on "
    "and the heating keeps the living room warm through the evening"
)


@dataclass(slots=True)
class DuplexSample:
    """One full-duplex window: CPU, and what flowed while it was measured."""

    cpu: float
    sent_frames: int  # outbound frames in the window
    fed_frames: int  # of those, frames of fed audio (not silence for want of input)
    received: int  # inbound frames (bare) or reply chunks (ours) in the window
    reply_playing: bool  # the far end was still speaking when the window closed


@dataclass(frozen=True, slots=True)
class SetupSample:
    """One set-up: its wall time, and the far end's share of it (its handlers)."""

    ms: float
    far_end_ms: float

    @property
    def near_ms(self) -> float:
        """The set-up without the far end's handling: the client and the network."""
        return self.ms - self.far_end_ms


@dataclass(slots=True)
class IdleSample:
    """CPU of one open session, microphone detached and attached (sending silence)."""

    detached: float
    attached: float
    attached_frames: int  # frames the attached microphone sent in its window
    detached_frames: int


# -- set-up -------------------------------------------------------------------------


async def setup_ours(client: ItanniXClient, far_end: FarEndClock) -> SetupSample:
    """``RealtimeConnection.connect()``: session request, SDP request, channel open."""
    connection = RealtimeConnection(client)
    try:
        far_end.reset()
        start = time.perf_counter()
        await connection.connect()
        return SetupSample(1000 * (time.perf_counter() - start), far_end.ms)
    finally:
        await connection.close()


async def setup_bare(
    http: aiohttp.ClientSession, answerer_url: str, far_end: FarEndClock
) -> SetupSample:
    """A bare peer: createOffer, one HTTP POST of the SDP to the answerer, channel open.

    The least any client of an HTTP-signalled service pays: one request for the SDP.
    """
    peer = BarePeer()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            far_end.reset()
            start = time.perf_counter()
            await peer.accept(await post_offer(http, answerer_url, await peer.offer()))
            await peer.wait_open()
            return SetupSample(1000 * (time.perf_counter() - start), far_end.ms)
    finally:
        await peer.close()


# -- full duplex --------------------------------------------------------------------


def below_vad(pcm: bytes, peak_rms: float = QUIET_RMS) -> bytes:
    """``pcm`` (s16) scaled so no 20 ms frame's RMS exceeds ``peak_rms``.

    What a microphone hears of a room while the assistant speaks: audio the encoder
    still has to code, too quiet for the service's VAD to take as a barge-in (which
    would cut the reply, and with it the other half of full duplex).
    """
    samples = array("h", pcm)
    frame = 320  # 20 ms at 16 kHz
    loudest = max(
        (
            math.sqrt(sum(x * x for x in samples[i : i + frame]) / frame)
            for i in range(0, len(samples) - frame + 1, frame)
        ),
        default=0.0,
    )
    if loudest <= peak_rms:
        return pcm
    scale = peak_rms / loudest
    return array("h", (int(x * scale) for x in samples)).tobytes()


def long_text(seconds: float) -> str:
    """Text the emulator takes at least ``seconds`` to say."""
    words = math.ceil(seconds / _SECONDS_PER_WORD)
    vocabulary = _TEXT.split()
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))


class _ReplyWatch:
    """Follows the far end's output audio buffer through the session's events."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = False

    def __call__(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "output_audio_buffer.started":
            self.started.set()
        elif event.get("type") in (
            "output_audio_buffer.stopped",
            "output_audio_buffer.cleared",
        ):
            self.stopped = True


async def _count_reply(turn: AudioTurn, counter: list[int]) -> None:
    # Only counts: anything heavier here would be billed to the library.
    async for _chunk in turn.reply_audio():
        counter[0] += 1


async def duplex_ours(
    client: ItanniXClient, mic_pcm: bytes, settle: float, seconds: float
) -> DuplexSample:
    """Our session mid-turn: microphone fed at real time while the reply plays."""
    # The reply is generated before it has played: keep the microphone on after the
    # response is done, so the whole window is full duplex.
    session = await RealtimeSession.open(client, detach_idle_microphone=False)
    connection = session.connection
    feeder = RealTimeFeeder(below_vad(mic_pcm), session.feed_audio)
    watch = _ReplyWatch()
    remove_watch = connection.add_listener(watch)
    chunks = [0]
    consumer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(STEP_TIMEOUT + settle + seconds):
            turn = await session.start_audio_turn()
            consumer = asyncio.get_running_loop().create_task(
                _count_reply(turn, chunks)
            )
            # A typed message asking for a spoken answer: a reply long enough to cover
            # the whole window (a spoken turn's default reply is one short sentence).
            await connection.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [
                            {
                                "type": "input_text",
                                "text": long_text(settle + seconds + 3),
                            }
                        ],
                    },
                }
            )
            await connection.send(
                {
                    "type": "response.create",
                    "response": {"modalities": ["audio", "text"]},
                }
            )
            await watch.started.wait()
            feeder.start()
            await asyncio.sleep(settle)
            mic = connection.microphone
            sent, fed, received = mic.frames_sent, mic.voiced_frames_sent, chunks[0]
            cpu = await cpu_percent(seconds)
            sample = DuplexSample(
                cpu=cpu,
                sent_frames=mic.frames_sent - sent,
                fed_frames=mic.voiced_frames_sent - fed,
                received=chunks[0] - received,
                reply_playing=not watch.stopped,
            )
            await turn.cancel()
            return sample
    finally:
        remove_watch()
        await feeder.stop()
        await session.close()
        if consumer is not None:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def duplex_bare(
    http: aiohttp.ClientSession, answerer_url: str, settle: float, seconds: float
) -> DuplexSample:
    """A bare peer sending a tone to the bare answerer, which sends one back."""
    peer = BarePeer()
    try:
        async with asyncio.timeout(STEP_TIMEOUT + settle + seconds):
            await peer.accept(await post_offer(http, answerer_url, await peer.offer()))
            await peer.wait_open()
            await peer.drain.flowing.wait()
            await asyncio.sleep(settle)
            sent, received = peer.tone.frames_sent, peer.drain.frames
            cpu = await cpu_percent(seconds)
            return DuplexSample(
                cpu=cpu,
                sent_frames=peer.tone.frames_sent - sent,
                fed_frames=peer.tone.frames_sent - sent,
                received=peer.drain.frames - received,
                reply_playing=True,  # the answerer's tone never stops
            )
    finally:
        await peer.close()


# -- idle ---------------------------------------------------------------------------


async def idle_ours(
    client: ItanniXClient, settle: float, seconds: float, *, attached_first: bool
) -> IdleSample:
    """One open session between turns: microphone detached, then attached (or back)."""
    session = await RealtimeSession.open(client)  # detaches the microphone
    connection = session.connection
    cpu: dict[bool, float] = {}
    frames: dict[bool, int] = {}
    try:
        async with asyncio.timeout(STEP_TIMEOUT + 2 * (settle + seconds)):
            for attached in (attached_first, not attached_first):
                if attached:
                    connection.attach_microphone()  # nothing fed: it sends silence
                else:
                    connection.detach_microphone()
                await asyncio.sleep(settle)
                sent = connection.microphone.frames_sent
                cpu[attached] = await cpu_percent(seconds)
                frames[attached] = connection.microphone.frames_sent - sent
    finally:
        await session.close()
    return IdleSample(
        detached=cpu[False],
        attached=cpu[True],
        attached_frames=frames[True],
        detached_frames=frames[False],
    )
