"""Real audio for tests: speech made with espeak-ng at test time, and ways to compare it."""

from __future__ import annotations

import io
from pathlib import Path
import shutil
import subprocess

import av
import numpy as np
import pytest

RATE = 16_000


def decode_pcm16k(source: Path | bytes) -> bytes:
    """Decode any audio file (WAV, MP3, FLAC...) to 16 kHz mono s16 PCM."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as c:
        for frame in c.decode(audio=0):
            for res in resampler.resample(frame):
                out += bytes(res.planes[0])[: res.samples * 2]
    for res in resampler.resample(None):
        out += bytes(res.planes[0])[: res.samples * 2]
    return bytes(out)


def speak(text: str, directory: Path) -> bytes:
    """Speech for ``text`` from espeak-ng, as 16 kHz mono s16 PCM."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: scripts/setup installs it")
    wav = directory / f"{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    return decode_pcm16k(wav)


def silence(seconds: float) -> bytes:
    """Digital silence, 16 kHz mono s16."""
    return bytes(int(RATE * seconds) * 2)


def rms(pcm: bytes) -> float:
    """Loudness of s16 PCM (0 for silence)."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def envelope(pcm: bytes, window_ms: int = 20, rate: int = RATE) -> np.ndarray:
    """Loudness per window: what survives codecs, resampling and small delays."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    size = rate * window_ms // 1000
    frames = samples[: samples.size // size * size].reshape(-1, size)
    return np.sqrt(np.mean(frames**2, axis=1))


def similarity(heard: bytes, reference: bytes, rate: int = RATE) -> float:
    """Best normalized correlation of two recordings' envelopes over any alignment."""
    a, b = envelope(heard, rate=rate), envelope(reference, rate=rate)
    a = (a - a.mean()) / (a.std() or 1.0)
    b = (b - b.mean()) / (b.std() or 1.0)
    if a.size < b.size:
        a = np.pad(a, (0, b.size - a.size))
    corr = np.correlate(a, b, mode="valid") / b.size
    return float(corr.max())
