"""N concurrent voice sessions, ours and bare, as satellites would hold them.

Ours: N ``RealtimeSession`` against the emulator (its own process), each microphone fed
a spoken utterance and a pause in a loop at real time (20 ms chunks, as a satellite
streams); the emulator's VAD hears each end of speech and answers in its voice, which
the client receives. The baseline: N plain aiortc peers in this process, each sending
the same audio (precomputed 48 kHz frames, paced) to the bare answerer's process, which
sends a tone back. Per N and side: this process's CPU per session, microphone frames
sent against the wall clock, and gaps over 100 ms between reply audio frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
import fractions
import statistics
import time
from typing import Any, Final

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
import av

from custom_components.itannix.realtime import (
    AudioSubscription,
    ItanniXClient,
    RealtimeSession,
)
from custom_components.itannix.realtime.audio import Resampler

from .bare import post_offer
from .sources import MIC_RATE, RealTimeFeeder

STEP_TIMEOUT: Final = 60.0
GAP_SECONDS: Final = 0.100
FRAME_SECONDS: Final = 0.020
_RATE: Final = 48_000
_FRAME_SAMPLES: Final = 960
_TIME_BASE: Final = fractions.Fraction(1, _RATE)


@dataclass(slots=True)
class LoadSample:
    """One side at one N: what this process spent and what flowed, over one window."""

    sessions: int
    cpu_per_session: float  # % of one core
    wall: float  # seconds of the window
    frames_sent: int  # microphone frames, all sessions
    replies: int  # replies that played (ours) / sessions receiving (bare)
    reply_frames: int  # reply audio frames received during replies
    gaps: int  # reply frame inter-arrivals over GAP_SECONDS
    max_gap: float  # seconds
    setup: float  # seconds to open all N at once
    # ours: fed audio still queued at the window's end (the longest, s), and silent
    # frames dropped to catch up in the window; bare peers queue nothing
    lag: float = 0.0
    skipped: int = 0

    @property
    def expected_frames(self) -> float:
        """Microphone frames the wall clock asked for, all sessions."""
        return self.sessions * self.wall / FRAME_SECONDS

    @property
    def mic_percent(self) -> float:
        """Microphone frames sent against what the wall clock asked for, in %."""
        return 100 * self.frames_sent / self.expected_frames


def merge(samples: list[LoadSample]) -> LoadSample:
    """One side's windows at one N as one sample: CPU the median, the rest summed."""
    return LoadSample(
        sessions=samples[0].sessions,
        cpu_per_session=statistics.median(s.cpu_per_session for s in samples),
        wall=sum(s.wall for s in samples),
        frames_sent=sum(s.frames_sent for s in samples),
        replies=sum(s.replies for s in samples),
        reply_frames=sum(s.reply_frames for s in samples),
        gaps=sum(s.gaps for s in samples),
        max_gap=max(s.max_gap for s in samples),
        setup=statistics.median(s.setup for s in samples),
        lag=max(s.lag for s in samples),
        skipped=sum(s.skipped for s in samples),
    )


class GapMeter:
    """Inter-arrival of reply audio frames, only while a reply plays."""

    def __init__(self) -> None:
        """Start with nothing seen."""
        self.playing = False
        self.replies = 0
        self.frames = 0
        self.gaps = 0
        self.max_gap = 0.0
        self._last: float | None = None

    def reset(self) -> None:
        """Forget what was measured (the window starts)."""
        self.replies = self.frames = self.gaps = 0
        self.max_gap = 0.0
        self._last = None

    def started(self) -> None:
        """A reply started playing."""
        self.playing = True
        self.replies += 1
        self._last = None

    def stopped(self) -> None:
        """The reply stopped (or was cleared)."""
        self.playing = False
        self._last = None

    def frame(self, now: float) -> None:
        """A reply audio frame arrived at ``now``."""
        if not self.playing:
            return
        self.frames += 1
        if self._last is not None:
            gap = now - self._last
            self.max_gap = max(self.max_gap, gap)
            if gap > GAP_SECONDS:
                self.gaps += 1
        self._last = now


# -- ours ---------------------------------------------------------------------------


class _OursSession:
    """One of our sessions under load: fed in a loop, its reply voice timed.

    The speaker is listened to while a reply plays, as an ``AudioTurn`` does (from
    its response on): a subscription makes the sink resample what it receives.
    """

    def __init__(self, session: RealtimeSession, pcm: bytes) -> None:
        self.session = session
        self.meter = GapMeter()
        self.feeder = RealTimeFeeder(pcm, session.feed_audio)
        self._remove = session.connection.add_listener(self._on_event)
        self._sub: AudioSubscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def frames_sent(self) -> int:
        return self.session.connection.microphone.frames_sent

    @property
    def lag(self) -> float:
        return self.session.connection.microphone.buffered_seconds

    @property
    def skipped(self) -> int:
        # getattr: the same benchmark measures a track without catch-up too.
        return getattr(self.session.connection.microphone, "skipped_frames", 0)

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "output_audio_buffer.started":
            self._listen()
            self.meter.started()
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self.meter.stopped()
            if self._sub is not None:
                self._sub.close()
                self._sub = None

    def _listen(self) -> None:
        if self._sub is not None:
            self._sub.close()
        self._sub = self.session.connection.speaker.subscribe()
        task = asyncio.get_running_loop().create_task(self._time_reply(self._sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _time_reply(self, sub: AudioSubscription) -> None:
        # Only timestamps: anything heavier would be billed to the library.
        loop = asyncio.get_running_loop()
        async for _chunk in sub:
            self.meter.frame(loop.time())

    async def close(self) -> None:
        self._remove()
        await self.feeder.stop()
        if self._sub is not None:
            self._sub.close()
        await self.session.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _open_ours(client: ItanniXClient, pcm: bytes) -> _OursSession:
    # The microphone stays on between replies: every session streams all along.
    session = await RealtimeSession.open(client, detach_idle_microphone=False)
    try:
        await session.start_audio_turn()
        return _OursSession(session, pcm)
    except BaseException:
        await session.close()
        raise


async def load_ours(
    client: ItanniXClient, pcm: bytes, sessions: int, settle: float, seconds: float
) -> LoadSample:
    """N of our sessions at once, each fed ``pcm`` (16 kHz) in a loop."""
    opened: list[_OursSession] = []
    try:
        async with asyncio.timeout(STEP_TIMEOUT + settle + seconds):
            start = time.perf_counter()
            results = await asyncio.gather(
                *(_open_ours(client, pcm) for _ in range(sessions)),
                return_exceptions=True,
            )
            setup = time.perf_counter() - start
            opened = [r for r in results if isinstance(r, _OursSession)]
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            for item in opened:
                item.feeder.start()
            await asyncio.sleep(settle)
            return await _window(
                sessions,
                seconds,
                setup,
                meters=[item.meter for item in opened],
                sent=lambda: sum(item.frames_sent for item in opened),
                skipped=lambda: sum(item.skipped for item in opened),
                lag=lambda: max(item.lag for item in opened),
            )
    finally:
        await asyncio.gather(*(item.close() for item in opened))


# -- bare ---------------------------------------------------------------------------


def frames_48k(pcm16k: bytes) -> list[bytes]:
    """``pcm16k`` (16 kHz mono) as 48 kHz mono 20 ms frames, resampled once."""
    resampler = Resampler(_RATE, _FRAME_SAMPLES)
    return [*resampler.feed_pcm(pcm16k, MIC_RATE), *resampler.flush()]


class PcmTrack(MediaStreamTrack):
    """Loops precomputed 48 kHz frames, paced to the wall clock (a bare microphone)."""

    kind = "audio"

    def __init__(self, frames: list[bytes]) -> None:
        """Loop ``frames``."""
        super().__init__()
        self._frames = frames
        self._start: float | None = None
        self.frames_sent = 0

    async def recv(self) -> av.AudioFrame:
        """Return the next frame at its wall-clock time."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self.frames_sent * FRAME_SECONDS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="mono", samples=_FRAME_SAMPLES)
        frame.planes[0].update(self._frames[self.frames_sent % len(self._frames)])
        frame.sample_rate = _RATE
        frame.pts = self.frames_sent * _FRAME_SAMPLES
        frame.time_base = _TIME_BASE
        self.frames_sent += 1
        return frame


class _BareSession:
    """A plain aiortc peer: audio out, the far end's tone drained and timed."""

    def __init__(self, frames: list[bytes]) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = PcmTrack(frames)
        self.meter = GapMeter()
        self.meter.started()  # the answerer's tone plays all along
        self.flowing = asyncio.Event()
        self.channel: RTCDataChannel | None = None
        self._open = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(
                asyncio.get_running_loop().create_task(self._drain(track))
            )

    async def _drain(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.meter.frame(loop.time())
                self.flowing.set()

    async def connect(self, http: aiohttp.ClientSession, url: str) -> None:
        self.pc.addTrack(self.track)
        self.channel = self.pc.createDataChannel("messages", ordered=True)
        self.channel.on("open", self._open.set)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await post_offer(http, url, self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer, type="answer")
        )
        await self._open.wait()
        await self.flowing.wait()

    async def close(self) -> None:
        self.track.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


async def load_bare(
    http: aiohttp.ClientSession,
    answerer_url: str,
    frames: list[bytes],
    sessions: int,
    settle: float,
    seconds: float,
) -> LoadSample:
    """N bare peers at once to the bare answerer, each sending ``frames`` in a loop."""
    peers = [_BareSession(frames) for _ in range(sessions)]
    try:
        async with asyncio.timeout(STEP_TIMEOUT + settle + seconds):
            start = time.perf_counter()
            await asyncio.gather(*(peer.connect(http, answerer_url) for peer in peers))
            setup = time.perf_counter() - start
            await asyncio.sleep(settle)
            return await _window(
                sessions,
                seconds,
                setup,
                meters=[peer.meter for peer in peers],
                sent=lambda: sum(peer.track.frames_sent for peer in peers),
            )
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))


# -- the window ---------------------------------------------------------------------


async def _window(
    sessions: int,
    seconds: float,
    setup: float,
    *,
    meters: list[GapMeter],
    sent: Callable[[], int],
    skipped: Callable[[], int] = lambda: 0,
    lag: Callable[[], float] = lambda: 0.0,
) -> LoadSample:
    for meter in meters:
        meter.reset()
    frames, dropped = sent(), skipped()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return LoadSample(
        lag=lag(),
        skipped=skipped() - dropped,
        sessions=sessions,
        cpu_per_session=100 * cpu / wall / sessions,
        wall=wall,
        frames_sent=sent() - frames,
        replies=sum(m.replies for m in meters),
        reply_frames=sum(m.frames for m in meters),
        gaps=sum(m.gaps for m in meters),
        max_gap=max((m.max_gap for m in meters), default=0.0),
        setup=setup,
    )
