"""Audio to feed a microphone with: real speech (espeak-ng) or a tone, at real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from pathlib import Path
import shutil
import tempfile
import wave

from custom_components.itannix.realtime import Resampler

from .bare import tone_pcm

MIC_RATE = 16_000  # what Home Assistant's satellites deliver
CHUNK_SECONDS = 0.020
_SPEECH = (
    "Turn on the kitchen light, then set the living room to twenty one degrees "
    "and tell me whether the garage door is closed."
)


async def microphone_pcm() -> tuple[bytes, str]:
    """Return (16 kHz mono s16 PCM, "speech" or "tone"): speech when espeak-ng exists."""
    if shutil.which("espeak-ng") is not None:
        with contextlib.suppress(OSError, wave.Error, ValueError):
            pcm = await _espeak(_SPEECH)
            if pcm:
                return pcm, "speech"
    return tone_pcm(MIC_RATE, 4.0, hz=300.0), "tone"


async def _espeak(text: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng",
            "-w",
            str(path),
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            return b""
        with wave.open(str(path), "rb") as wav:
            rate, channels = wav.getframerate(), wav.getnchannels()
            pcm = wav.readframes(wav.getnframes())
    resampler = Resampler(MIC_RATE, int(MIC_RATE * CHUNK_SECONDS))
    layout = "stereo" if channels == 2 else "mono"
    return b"".join([*resampler.feed_pcm(pcm, rate, layout), *resampler.flush()])


class RealTimeFeeder:
    """Feeds looping PCM in 20 ms chunks on a wall-clock schedule, as a satellite does."""

    def __init__(self, pcm: bytes, feed: Callable[[bytes], None]) -> None:
        """Loop ``pcm`` (16 kHz mono s16) into ``feed``."""
        size = int(MIC_RATE * CHUNK_SECONDS) * 2
        self._chunks = [
            pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size)
        ]
        self._feed = feed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start feeding."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while True:
            self._feed(self._chunks[sent % len(self._chunks)])
            sent += 1
            delay = start + sent * CHUNK_SECONDS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop feeding."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
