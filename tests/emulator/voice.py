"""The emulated assistant's voice: speech synthesis and the paced outbound track."""

from __future__ import annotations

from array import array
import asyncio
from collections import deque
import contextlib
import fractions
import io
import math
import shutil
import struct
from typing import TYPE_CHECKING
import wave

from aiortc.mediastreams import MediaStreamTrack
import av

if TYPE_CHECKING:
    from collections.abc import Callable

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * 2
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
_SILENCE = bytes(FRAME_BYTES)

_ESPEAK_ARGS = ("--stdout", "-v", "en", "-s", "170")
_TONE_HZ = 440.0
_TONE_AMPLITUDE = 8000
_TONE_SECONDS_PER_WORD = 0.3


def espeak_available() -> bool:
    """Return True when espeak-ng is installed (speech); a tone is used otherwise."""
    return shutil.which("espeak-ng") is not None


def _wav_payload(data: bytes) -> tuple[bytes, int, int]:
    """Return (PCM, rate, channels) from a WAV; espeak's streamed sizes are bogus."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    pos, rate, channels = 12, 0, 0
    while pos + 8 <= len(data):
        chunk_id, size = (
            data[pos : pos + 4],
            struct.unpack("<I", data[pos + 4 : pos + 8])[0],
        )
        body = pos + 8
        if chunk_id == b"fmt ":
            _fmt, channels, rate = struct.unpack("<HHI", data[body : body + 8])
        elif chunk_id == b"data":
            # espeak-ng writes a placeholder size when streaming to stdout.
            return data[body : min(len(data), body + size)], rate, channels
        pos = body + size + (size & 1)
    raise ValueError("WAV without a data chunk")


def resample_to_48k_mono(pcm: bytes, rate: int, channels: int) -> bytes:
    """Resample s16 PCM to 48 kHz mono with PyAV (re-chunking its output)."""
    samples = len(pcm) // (2 * channels)
    if samples == 0:
        return b""
    layout = "mono" if channels == 1 else "stereo"
    frame = av.AudioFrame(format="s16", layout=layout, samples=samples)
    plane = frame.planes[0]
    plane.update(pcm[: samples * 2 * channels].ljust(plane.buffer_size, b"\0"))
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = fractions.Fraction(1, rate)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    out = bytearray()
    for piece in [*resampler.resample(frame), *resampler.resample(None)]:
        out += bytes(piece.planes[0])[: piece.samples * 2]
    return bytes(out)


def tone(text: str) -> bytes:
    """Return a 440 Hz tone about as long as ``text`` takes to say, soft-edged."""
    words = max(1, len(text.split()))
    total = int(SAMPLE_RATE * max(0.5, words * _TONE_SECONDS_PER_WORD))
    fade = SAMPLE_RATE // 100
    step = 2 * math.pi * _TONE_HZ / SAMPLE_RATE
    samples = array("h", bytes(total * 2))
    for i in range(total):
        gain = min(1.0, i / fade, (total - 1 - i) / fade)
        samples[i] = int(_TONE_AMPLITUDE * gain * math.sin(step * i))
    return samples.tobytes()


def pcm_to_wav(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """Wrap 16-bit mono PCM in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


class Synthesizer:
    """Text to 48 kHz mono s16 PCM, cached per text; never blocks the event loop."""

    def __init__(self, use_espeak: bool | None = None) -> None:
        """Use espeak-ng when installed (or as told), a tone otherwise."""
        self.use_espeak = espeak_available() if use_espeak is None else use_espeak
        self._cache: dict[str, bytes] = {}

    async def synthesize(self, text: str) -> bytes:
        """Return the PCM for ``text``."""
        if (cached := self._cache.get(text)) is not None:
            return cached
        pcm = await self._espeak(text) if self.use_espeak else b""
        if not pcm:
            pcm = tone(text)
        self._cache[text] = pcm
        return pcm

    async def _espeak(self, text: str) -> bytes:
        # Text goes in on stdin, so text that starts with "-" is never an option.
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng",
            *_ESPEAK_ARGS,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            wav, _ = await proc.communicate(text.encode())
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            return b""
        try:
            pcm, rate, channels = _wav_payload(wav)
        except ValueError:
            return b""
        return resample_to_48k_mono(pcm, rate, channels)


class Playback:
    """One queued utterance on the speaker track."""

    def __init__(
        self,
        pcm: bytes,
        on_started: Callable[[], None] | None = None,
        on_finished: Callable[[bool], None] | None = None,
    ) -> None:
        """Queue ``pcm``; callbacks fire on its first frame and when it ends."""
        self.pcm = pcm
        self.offset = 0
        self._on_started = on_started
        self._on_finished = on_finished
        self.started = asyncio.Event()
        # True when every frame was sent, False when cleared first.
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / 2 / SAMPLE_RATE

    def mark_started(self) -> None:
        """Record that the first frame is going out."""
        if not self.started.is_set():
            self.started.set()
            if self._on_started is not None:
                self._on_started()

    def finish(self, completed: bool) -> None:
        """Record the end of playback (completed, or cleared)."""
        if not self.done.done():
            self.done.set_result(completed)
            if self._on_finished is not None:
                self._on_finished(completed)


class SpeakerTrack(MediaStreamTrack):
    """Outbound 48 kHz mono audio, 20 ms frames paced to the wall clock.

    Plays queued utterances back to back and silence otherwise; ``clear()`` cuts off
    whatever is playing or queued.
    """

    kind = "audio"

    def __init__(self) -> None:
        """Create a silent track."""
        super().__init__()
        self._queue: deque[Playback] = deque()
        self._current: Playback | None = None
        self._start: float | None = None
        self._pts = 0

    def play(
        self,
        pcm: bytes,
        on_started: Callable[[], None] | None = None,
        on_finished: Callable[[bool], None] | None = None,
    ) -> Playback:
        """Queue an utterance after any already queued."""
        playback = Playback(pcm, on_started, on_finished)
        if pcm:
            self._queue.append(playback)
        else:
            playback.mark_started()
            playback.finish(True)
        return playback

    @property
    def busy(self) -> bool:
        """Return True while an utterance is playing or queued."""
        return self._current is not None or bool(self._queue)

    def clear(self) -> bool:
        """Drop everything playing or queued; return True when anything was dropped."""
        dropped = [p for p in (self._current, *self._queue) if p is not None]
        self._current = None
        self._queue.clear()
        for playback in dropped:
            playback.finish(False)
        return bool(dropped)

    def stop(self) -> None:
        """End the track; pending utterances count as cleared."""
        self.clear()
        super().stop()

    async def recv(self) -> av.AudioFrame:
        """Return the next 20 ms frame, no earlier than the wall clock says."""
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(self._next_chunk())
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        return frame

    def _next_chunk(self) -> bytes:
        if self._current is None and self._queue:
            self._current = self._queue.popleft()
        current = self._current
        if current is None:
            return _SILENCE
        chunk = current.pcm[current.offset : current.offset + FRAME_BYTES]
        current.offset += FRAME_BYTES
        current.mark_started()
        if current.offset >= len(current.pcm):
            self._current = None
            current.finish(True)
        return chunk.ljust(FRAME_BYTES, b"\0")
