"""Resampling, re-chunking, microphone pacing and the speaker sink (no network)."""

from __future__ import annotations

import asyncio
import math
import struct

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
import av
import pytest

from custom_components.itannix.realtime import MicrophoneTrack, Resampler, SpeakerSink
from custom_components.itannix.realtime.audio import pcm_frame


def tone(rate: int, seconds: float, freq: float = 440.0, amp: int = 8000) -> bytes:
    count = int(rate * seconds)
    return struct.pack(
        f"<{count}h",
        *(int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(count)),
    )


def rms(pcm: bytes) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def test_resampler_rechunks_to_fixed_frames() -> None:
    resampler = Resampler(48_000, 960)
    source = tone(16_000, 1.0)
    chunks: list[bytes] = []
    # Awkward chunk sizes, as a satellite might send.
    for i in range(0, len(source), 734):
        chunks += resampler.feed_pcm(source[i : i + 734], 16_000)
    chunks += resampler.flush()
    assert chunks
    assert all(len(c) == 960 * 2 for c in chunks)
    total = sum(len(c) for c in chunks) // 2
    assert abs(total - 48_000) <= 960  # one second, give or take the padded frame
    # The tone survives: same loudness, not silence or clipping.
    assert rms(b"".join(chunks[5:-5])) == pytest.approx(rms(source), rel=0.05)


def test_resampler_stereo_48k_to_mono_16k() -> None:
    resampler = Resampler(16_000, 320)
    mono = tone(48_000, 0.5)
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))
    chunks = resampler.feed_frame(pcm_frame(stereo, 48_000, "stereo"))
    chunks += resampler.flush()
    assert all(len(c) == 640 for c in chunks)
    assert abs(sum(len(c) for c in chunks) // 2 - 8_000) <= 320
    assert rms(b"".join(chunks[2:-2])) == pytest.approx(rms(mono), rel=0.05)


def test_resampler_passthrough_same_format() -> None:
    resampler = Resampler(16_000, 320)
    source = tone(16_000, 0.1)
    chunks = resampler.feed_pcm(source, 16_000)
    assert b"".join(chunks) == source  # exact: no filter, no delay


def test_resampler_survives_format_change() -> None:
    resampler = Resampler(16_000, 320)
    resampler.feed_frame(pcm_frame(tone(48_000, 0.1), 48_000))
    chunks = resampler.feed_frame(pcm_frame(tone(24_000, 0.1), 24_000))
    assert all(len(c) == 640 for c in chunks)


class FakeClock:
    """A clock the test advances; sleep() advances it and records the delay."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(round(delay, 6))
        self.now += delay


async def test_microphone_silence_when_starved() -> None:
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    frames = [await mic.recv() for _ in range(3)]
    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        # 20 ms at the input's rate: aiortc's encoder resamples to 48 kHz itself.
        assert frame.samples == 320
        assert frame.sample_rate == 16_000
        assert frame.format.name == "s16"
        assert frame.layout.name == "mono"
        assert not any(bytes(frame.planes[0])[: 320 * 2])
    assert [f.pts for f in frames] == [0, 320, 640]
    mic.stop()


async def test_microphone_paces_to_wall_clock() -> None:
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await mic.recv()
    # The first frame goes at once, then one every 20 ms.
    assert clock.sleeps == [0.02] * 4
    # A small delay (the encoder took 30 ms) is caught up without sleeping...
    clock.now += 0.03
    clock.sleeps.clear()
    await mic.recv()
    await mic.recv()
    assert clock.sleeps == [0.01]
    mic.stop()


async def test_microphone_does_not_burst_after_stall() -> None:
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    await mic.recv()
    await mic.recv()
    clock.now += 2.0  # detached, or the loop stalled
    clock.sleeps.clear()
    start = clock.now
    for _ in range(4):
        await mic.recv()
    # No catch-up burst of 100 frames: the clock restarts, and pacing resumes.
    assert clock.sleeps == [0.02] * 3
    assert clock.now - start == pytest.approx(0.06)
    mic.stop()


async def test_microphone_sends_fed_audio_then_silence() -> None:
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    speech = tone(16_000, 0.1)
    for i in range(0, len(speech), 333):  # odd sizes split samples in half
        mic.feed(speech[i : i + 333])
    mic.flush()
    assert mic.buffered_seconds == pytest.approx(0.1, abs=0.021)
    voiced = []
    for _ in range(10):
        frame = await mic.recv()
        voiced.append(rms(bytes(frame.planes[0])[: frame.samples * 2]))
    assert all(v > 3000 for v in voiced[1:4])
    assert all(v == 0 for v in voiced[7:])
    assert mic.voiced_frames_sent in (5, 6)
    mic.stop()


async def test_microphone_clear_drops_pending_audio() -> None:
    clock = FakeClock()
    mic = MicrophoneTrack(clock=clock, sleep=clock.sleep)
    mic.feed(tone(16_000, 0.5))
    mic.clear()
    assert mic.buffered_seconds == 0
    frame = await mic.recv()
    assert not any(bytes(frame.planes[0]))
    mic.stop()
    with pytest.raises(MediaStreamError):
        await mic.recv()


async def test_microphone_buffer_is_bounded() -> None:
    mic = MicrophoneTrack(max_buffer_seconds=1.0)
    mic.feed(tone(16_000, 3.0, amp=100))
    assert mic.buffered_seconds == pytest.approx(1.0)
    assert mic.dropped_frames > 0
    mic.stop()


class QueueTrack(MediaStreamTrack):
    """Stands in for aiortc's remote track: frames the test pushes, then the end."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()

    async def recv(self) -> av.AudioFrame:
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


def stereo_frames(seconds: float) -> list[av.AudioFrame]:
    mono = tone(48_000, seconds)
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))
    size = 960 * 4
    return [
        pcm_frame(stereo[i : i + size], 48_000, "stereo")
        for i in range(0, len(stereo), size)
    ]


async def test_speaker_sink_subscription_gets_audio_from_now_on() -> None:
    track = QueueTrack()
    sink = SpeakerSink(rate=16_000)
    sink.start(track)
    early = stereo_frames(0.2)
    for frame in early:
        track.queue.put_nowait(frame)
    while sink.frames_received < len(early):
        await asyncio.sleep(0)
    sub = sink.subscribe()
    for frame in stereo_frames(0.4):
        track.queue.put_nowait(frame)
    track.queue.put_nowait(None)  # the remote track ends
    chunks = [chunk async for chunk in sub]
    assert sink.frames_received == len(early) + 20
    assert all(len(c) == 640 for c in chunks)
    # 0.4 s at 16 kHz, in 20 ms chunks; the 0.2 s before subscribing is not included.
    assert 18 <= len(chunks) <= 20
    assert rms(b"".join(chunks[2:])) > 3000
    await sink.stop()
    assert not sink.running


async def test_speaker_sink_stop_ends_subscribers() -> None:
    track = QueueTrack()
    sink = SpeakerSink()
    sink.start(track)
    sub = sink.subscribe()
    await sink.stop()
    assert [chunk async for chunk in sub] == []
    assert sub.closed
