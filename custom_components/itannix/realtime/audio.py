"""Audio plumbing between PCM byte streams and aiortc tracks.

- ``MicrophoneTrack``: the outbound track; PCM fed at any chunk size, handed to aiortc's
  Opus encoder as paced 20 ms frames at the input's rate (silence when starved); a
  backlog (audio queued while the session was opening) is caught up instead of
  delaying all that follows.
- ``SpeakerSink``: drains the remote track continuously (aiortc's queue is unbounded)
  and hands fixed-size PCM chunks to whoever subscribed.
- ``Resampler``: PyAV resampling to s16 mono, re-chunked to fixed frames.
"""

from __future__ import annotations

from array import array
import asyncio
from collections import deque
import contextlib
import fractions
import logging
import math
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
import av

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

_LOGGER = logging.getLogger(__name__)

SAMPLE_WIDTH: Final = 2  # s16
FRAME_SECONDS: Final = 0.020
# Once recv() falls this far behind its schedule (the sender was detached or the loop
# stalled), restart the clock instead of bursting frames to catch up.
MAX_LAG_SECONDS: Final = 0.1
# Fed audio waiting beyond this is a backlog (a satellite's audio queued while the
# session was opening, or said again to a fresh one): it is caught up, down to
# CAUGHT_UP_SECONDS, or every later end of speech would reach the service's VAD late
# by as much.
BACKLOG_SECONDS: Final = 0.2
CAUGHT_UP_SECONDS: Final = 0.04
# While catching up, frames go this many times faster than real time: a burst small
# enough for a receiver's jitter buffer, and a 1 s backlog is gone within 1 s.
CATCH_UP_SPEED: Final = 2
# ...and silence in the backlog is dropped first, beyond the first QUIET_KEPT_SECONDS
# of each quiet run: more than a server VAD's end of speech (500 ms by default), so an
# utterance in the backlog still ends, but the wait before the user spoke and long
# pauses do not have to be sent. Quiet: int16 RMS below QUIET_RMS (about -44 dBFS).
QUIET_KEPT_SECONDS: Final = 0.6
QUIET_RMS: Final = 200.0


def pcm_frame(pcm: bytes, rate: int, layout: str = "mono") -> av.AudioFrame:
    """Wrap interleaved s16 PCM in an ``av.AudioFrame``."""
    channels = 2 if layout == "stereo" else 1
    frame = av.AudioFrame(
        format="s16", layout=layout, samples=len(pcm) // (SAMPLE_WIDTH * channels)
    )
    frame.planes[0].update(pcm)
    frame.sample_rate = rate
    return frame


def frame_pcm(frame: Any) -> bytes:
    """Return the s16 samples of a packed frame (without the plane's padding)."""
    channels = len(frame.layout.channels)
    return bytes(frame.planes[0])[: frame.samples * SAMPLE_WIDTH * channels]


def is_quiet(pcm: bytes) -> bool:
    """Whether s16 mono PCM is silence (RMS below ``QUIET_RMS``)."""
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return True
    return math.sumprod(samples, samples) < QUIET_RMS * QUIET_RMS * len(samples)


class Resampler:
    """Resample audio to s16 mono at ``rate`` and re-chunk it into fixed frames.

    PyAV's resampler returns frames of varying size (its filter has a delay); consumers
    want fixed frames, so the output is buffered and cut into ``frame_samples`` chunks.
    """

    def __init__(self, rate: int, frame_samples: int) -> None:
        """Initialize for an output rate and chunk size (in samples)."""
        self.rate = rate
        self.frame_bytes = frame_samples * SAMPLE_WIDTH
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting for a full chunk."""
        return len(self._buffer)

    def feed_pcm(self, pcm: bytes, rate: int, layout: str = "mono") -> list[bytes]:
        """Feed s16 PCM; return the complete chunks now available."""
        if not pcm:
            return []
        return self.feed_frame(pcm_frame(pcm, rate, layout))

    def feed_frame(self, frame: Any) -> list[bytes]:
        """Feed an ``av.AudioFrame``; return the complete chunks now available."""
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key == ("s16", "mono", self.rate):
            # Already what we want: skip the filter graph (and its delay).
            self._buffer += frame_pcm(frame)
            return self._chunks()
        if self._resampler is None or key != self._input_key:
            # PyAV refuses frames that differ from the first; start a new graph.
            self._resampler = av.AudioResampler(
                format="s16", layout="mono", rate=self.rate
            )
            self._input_key = key
        frame.pts = None
        for out in self._resampler.resample(frame):
            self._buffer += frame_pcm(out)
        return self._chunks()

    def flush(self, *, pad: bool = True) -> list[bytes]:
        """Drain the filter; with ``pad``, complete the last chunk with silence."""
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._buffer += frame_pcm(out)
            self._resampler = None
            self._input_key = None
        if pad and self._buffer and len(self._buffer) % self.frame_bytes:
            self._buffer += bytes(
                self.frame_bytes - len(self._buffer) % self.frame_bytes
            )
        return self._chunks()

    def reset(self) -> None:
        """Forget buffered audio and filter state."""
        self._resampler = None
        self._input_key = None
        self._buffer.clear()

    def _chunks(self) -> list[bytes]:
        size = self.frame_bytes
        count = len(self._buffer) // size
        if not count:
            return []
        chunks = [bytes(self._buffer[i * size : (i + 1) * size]) for i in range(count)]
        del self._buffer[: count * size]
        return chunks


class MicrophoneTrack(MediaStreamTrack):
    """Outbound audio track fed with PCM (16 kHz mono s16 by default).

    Frames go out at the input's rate: aiortc's Opus encoder resamples every frame to
    48 kHz stereo anyway, so resampling here first would only double the work.
    aiortc pulls frames as fast as ``recv()`` returns them, so ``recv()`` paces itself
    to the wall clock, 20 ms per frame, and sends silence when nothing was fed.
    While paused, ``recv()`` waits: the sender sends nothing and wakes nobody.

    Fed audio is sent as it comes while it keeps up; when more than
    ``BACKLOG_SECONDS`` waits, the track catches up (down to ``CAUGHT_UP_SECONDS``):
    long silences in the backlog are dropped (``skipped_frames``) and the rest goes
    ``CATCH_UP_SPEED`` times faster, so the user's speech is all sent and its end
    reaches the service on time.
    """

    kind = "audio"

    def __init__(
        self,
        *,
        input_rate: int = 16_000,
        max_buffer_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        """Initialize; ``clock``/``sleep`` are injectable for deterministic tests."""
        super().__init__()
        self.input_rate = input_rate
        self._frame_samples = round(input_rate * FRAME_SECONDS)
        self._frame_bytes = self._frame_samples * SAMPLE_WIDTH
        self._time_base = fractions.Fraction(1, input_rate)
        self._pending = bytearray()  # fed, less than a frame
        self._frames: deque[bytes] = deque()
        self._max_frames = int(max_buffer_seconds / FRAME_SECONDS)
        self._backlog_frames = round(BACKLOG_SECONDS / FRAME_SECONDS)
        self._caught_up_frames = round(CAUGHT_UP_SECONDS / FRAME_SECONDS)
        self._catching_up = False
        self._quiet_kept_frames = round(QUIET_KEPT_SECONDS / FRAME_SECONDS)
        self._quiet_run = 0  # quiet frames just sent while catching up
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None  # when the next frame is due
        self._pts = 0
        self._silence = bytes(self._frame_bytes)
        self._running = asyncio.Event()
        self._running.set()
        self.frames_sent = 0
        self.voiced_frames_sent = 0
        self.dropped_frames = 0  # fed audio dropped: the buffer overflowed
        self.skipped_frames = 0  # fed silence dropped to catch up

    @property
    def paused(self) -> bool:
        """Whether ``recv()`` holds frames back (an idle session)."""
        return not self._running.is_set()

    def pause(self) -> None:
        """Send nothing until ``resume()``."""
        self._running.clear()

    def resume(self) -> None:
        """Send again, paced from now."""
        self._running.set()

    def stop(self) -> None:
        """End the track (a paused ``recv()`` wakes up and ends too)."""
        super().stop()
        self._running.set()

    @property
    def buffered_seconds(self) -> float:
        """Seconds of fed audio not sent yet."""
        return len(self._frames) * FRAME_SECONDS

    def feed(self, pcm: bytes) -> None:
        """Queue PCM (s16 mono at ``input_rate``); any chunk size."""
        # A lone trailing byte waits for the next call: half a sample is not a sample.
        self._pending += pcm
        self._queue()

    def flush(self) -> None:
        """Push out everything fed so far (the last frame padded with silence)."""
        pending = self._pending
        del pending[len(pending) - len(pending) % SAMPLE_WIDTH :]  # a lone byte
        if pending:
            pending += bytes(-len(pending) % self._frame_bytes)
        self._queue()

    def clear(self) -> None:
        """Drop audio fed but not sent yet."""
        self._frames.clear()
        self._pending.clear()

    def _queue(self) -> None:
        pending, size = self._pending, self._frame_bytes
        count = len(pending) // size
        if not count:
            return
        self._frames.extend(
            bytes(pending[i * size : (i + 1) * size]) for i in range(count)
        )
        del pending[: count * size]
        overflow = len(self._frames) - self._max_frames
        if overflow > 0:
            # Nobody is sending (detached track): keep the newest audio, bounded.
            for _ in range(overflow):
                self._frames.popleft()
            self.dropped_frames += overflow

    async def recv(self) -> av.AudioFrame:
        """Return the next 20 ms frame at its wall-clock time."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._running.is_set():
            await self._running.wait()
            if self.readyState != "live":
                raise MediaStreamError
        now = self._clock()
        if self._due is None or now - self._due > MAX_LAG_SECONDS:
            self._due = now
        delay = self._due - now
        if delay > 0:
            await self._sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError
        pcm = self._next_pcm()
        frame = pcm_frame(pcm, self.input_rate)
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += self._frame_samples
        self.frames_sent += 1
        return frame

    def _next_pcm(self) -> bytes:
        """The next frame's PCM; schedules the one after (sooner while catching up)."""
        assert self._due is not None
        frames = self._frames
        if len(frames) > self._backlog_frames:
            self._catching_up = True
        elif len(frames) <= self._caught_up_frames:
            self._catching_up = False
        if not self._catching_up:
            self._quiet_run = 0
            self._due += FRAME_SECONDS
            if not frames:
                return self._silence
            self.voiced_frames_sent += 1
            return frames.popleft()
        # Behind: skip the backlog's long silences, send the rest faster.
        self._due += FRAME_SECONDS / CATCH_UP_SPEED
        while len(frames) > self._caught_up_frames and is_quiet(frames[0]):
            if self._quiet_run < self._quiet_kept_frames:
                self._quiet_run += 1
                break
            frames.popleft()
            self.skipped_frames += 1
        else:
            self._quiet_run = 0
        self.voiced_frames_sent += 1
        return frames.popleft()


class AudioSubscription:
    """PCM chunks from a ``SpeakerSink``, from the moment of subscribing.

    Iterate with ``async for``; iteration ends after ``close()`` (once what was already
    queued has been read) or when the sink stops. ``last_voiced`` is when (event loop
    time) the last chunk that was not silence (``is_quiet``) came.
    """

    def __init__(self, sink: SpeakerSink, max_chunks: int) -> None:
        """Initialize; use ``SpeakerSink.subscribe()``."""
        self._sink = sink
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._max_chunks = max_chunks
        self._closed = False
        self.chunks_received = 0
        self.voiced_chunks = 0
        self.last_voiced: float | None = None

    @property
    def closed(self) -> bool:
        """Whether no more audio will be added."""
        return self._closed

    def put(self, chunk: bytes, *, voiced: bool = False) -> None:
        """Add a chunk (called by the sink); ``voiced``: it is not silence."""
        if self._closed:
            return
        if voiced:
            self.voiced_chunks += 1
            self.last_voiced = asyncio.get_running_loop().time()
        if self._queue.qsize() >= self._max_chunks:
            # A consumer that fell far behind loses the oldest audio, not memory.
            self._queue.get_nowait()
        self._queue.put_nowait(chunk)
        self.chunks_received += 1

    def close(self) -> None:
        """Stop receiving audio; the iterator ends after the queued chunks."""
        if self._closed:
            return
        self._closed = True
        self._sink.unsubscribe(self)
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Return self."""
        return self

    async def __anext__(self) -> bytes:
        """Return the next chunk."""
        chunk = await self._queue.get()
        if chunk is None:
            self._queue.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return chunk


class SpeakerSink:
    """Drains a remote audio track into fixed PCM chunks for subscribers.

    The remote track is read continuously, even with nobody listening, because aiortc
    queues decoded frames without bound. ``on_demand(wanted)`` is told when the first
    subscriber comes and the last one goes (and ``False`` at ``start()`` when nobody
    listens), so the connection can stop aiortc decoding audio nobody hears.
    """

    def __init__(
        self,
        *,
        rate: int = 16_000,
        chunk_ms: int = 20,
        max_buffer_seconds: float = 60,
        on_demand: Callable[[bool], None] | None = None,
    ) -> None:
        """Initialize for an output rate and chunk length."""
        self.rate = rate
        self._on_demand = on_demand
        self.chunk_bytes = rate * chunk_ms // 1000 * SAMPLE_WIDTH
        self._resampler = Resampler(rate, rate * chunk_ms // 1000)
        self._max_chunks = max(1, int(max_buffer_seconds * 1000 / chunk_ms))
        self._subscriptions: list[AudioSubscription] = []
        self._task: asyncio.Task[None] | None = None
        self._track: MediaStreamTrack | None = None
        self.frames_received = 0

    @property
    def running(self) -> bool:
        """Whether a track is being drained."""
        return self._task is not None and not self._task.done()

    def start(self, track: MediaStreamTrack) -> None:
        """Start draining ``track`` (replacing a previous one)."""
        if self._task is not None:
            self._task.cancel()
        self._track = track
        self._resampler.reset()
        self._task = asyncio.get_running_loop().create_task(
            self._drain(track), name="itannix-speaker-sink"
        )
        self._tell_demand()

    @property
    def wanted(self) -> bool:
        """Whether anyone listens (the remote audio is worth decoding)."""
        return bool(self._subscriptions)

    def _tell_demand(self) -> None:
        if self._on_demand is not None:
            self._on_demand(self.wanted)

    def subscribe(self) -> AudioSubscription:
        """Return a subscription receiving the audio from now on."""
        sub = AudioSubscription(self, self._max_chunks)
        first = not self._subscriptions
        if first:
            # Nothing was resampled while nobody listened: start clean.
            self._resampler.reset()
        self._subscriptions.append(sub)
        if first:
            self._tell_demand()
        return sub

    def unsubscribe(self, sub: AudioSubscription) -> None:
        """Stop feeding a subscription."""
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)
            if not self._subscriptions:
                self._tell_demand()

    async def _drain(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames_received += 1
                if not self._subscriptions:
                    continue
                for chunk in self._resampler.feed_frame(frame):
                    # Once per chunk, for all: when the reply's voice went quiet.
                    voiced = not is_quiet(chunk)
                    for sub in list(self._subscriptions):
                        sub.put(chunk, voiced=voiced)
        except MediaStreamError:
            _LOGGER.debug("Remote audio track ended")
        finally:
            for sub in list(self._subscriptions):
                sub.close()

    async def stop(self) -> None:
        """Stop draining and end every subscription."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self._subscriptions):
            sub.close()
        self._track = None
