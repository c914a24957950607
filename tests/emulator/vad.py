"""Energy VAD over the inbound audio track, standing in for the service's server VAD."""

from __future__ import annotations

from array import array
import math
import sys
from typing import TYPE_CHECKING

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

if TYPE_CHECKING:
    from collections.abc import Callable

    import av

# Int16 RMS: espeak-ng speech sits in the thousands, Opus-decoded silence near zero.
RMS_THRESHOLD = 500
MIN_SPEECH_MS = 100.0
MIN_SILENCE_MS = 500.0


def frame_rms(frame: av.AudioFrame) -> float:
    """RMS of a packed s16 frame (aiortc's decoder output), mixed down to mono."""
    channels = len(frame.layout.channels)
    samples = array("h", bytes(frame.planes[0])[: frame.samples * channels * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    if channels == 1:
        mono: array[int] | list[float] = samples
    else:
        mono = [
            sum(samples[i : i + channels]) / channels
            for i in range(0, len(samples), channels)
        ]
    return math.sqrt(math.sumprod(mono, mono) / len(mono))


class EnergyVad:
    """Speech start/stop from frame energy; records peak RMS and voiced time."""

    def __init__(
        self,
        on_speech_started: Callable[[float], None],
        on_speech_stopped: Callable[[float], None],
        threshold: float = RMS_THRESHOLD,
    ) -> None:
        """Call back with the stream position (ms) when speech starts and stops."""
        self._on_started = on_speech_started
        self._on_stopped = on_speech_stopped
        self.threshold = threshold
        self.position_ms = 0.0
        self.peak_rms = 0.0
        self.voiced_ms = 0.0
        self.in_speech = False
        self._run_ms = 0.0  # how long the current voiced (or silent) run has lasted
        self._run_start_ms = 0.0

    def reset(self) -> None:
        """Forget an utterance in progress (the client cleared the input buffer)."""
        self.in_speech = False
        self._run_ms = 0.0

    def feed(self, frame: av.AudioFrame) -> None:
        """Account for one inbound frame."""
        duration = 1000.0 * frame.samples / (frame.sample_rate or 48000)
        rms = frame_rms(frame)
        self.peak_rms = max(self.peak_rms, rms)
        voiced = rms >= self.threshold
        if voiced:
            self.voiced_ms += duration
        start = self.position_ms
        self.position_ms += duration
        if voiced != self.in_speech:
            # A run against the current state: speech while silent, silence in speech.
            if self._run_ms == 0.0:
                self._run_start_ms = start
            self._run_ms += duration
            needed = MIN_SILENCE_MS if self.in_speech else MIN_SPEECH_MS
            if self._run_ms >= needed:
                self.in_speech = voiced
                self._run_ms = 0.0
                if voiced:
                    self._on_started(self._run_start_ms)
                else:
                    self._on_stopped(self._run_start_ms)
        else:
            self._run_ms = 0.0


async def drain(track: MediaStreamTrack, vad: EnergyVad) -> None:
    """Read the remote track until it ends: aiortc's queue grows unbounded otherwise."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        vad.feed(frame)
