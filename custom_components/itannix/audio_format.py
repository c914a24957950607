"""The assistant's voice in the format a satellite asks for, encoded as it arrives.

Satellites ask text-to-speech for a format of their own: ESPHome ones 16 kHz mono
16-bit WAV, Wyoming ones 22.05 kHz WAV, Voice PE its media player's announcement format
(FLAC at 48 kHz). When Home Assistant converts our 16 kHz stream with ffmpeg, ffmpeg
holds the first audio back until it has read ahead; encoding it here (PyAV's resampler
and FLAC encoder, one 20 ms block at a time) passes each chunk on as it comes.

No Home Assistant imports: the entity maps its options to an ``AudioFormat``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
import contextlib
from dataclasses import dataclass
import io
import struct
from typing import Any, Final

import av

WAV: Final = "wav"
FLAC: Final = "flac"
# What a stream of unknown length puts in the WAV sizes (as Home Assistant does).
_UNKNOWN_SIZE: Final = 0xFFFFFFFF
# One FLAC block per 20 ms: a block goes out once its samples are in.
_BLOCK_SECONDS: Final = 0.020
_LAYOUTS: Final = {1: "mono", 2: "stereo"}
_WAV_HEADER_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A container and its 16-bit sample format."""

    extension: str
    sample_rate: int
    channels: int = 1

    @property
    def producible(self) -> bool:
        """Whether this module can encode it."""
        return (
            self.extension in (WAV, FLAC)
            and self.channels in _LAYOUTS
            and 8000 <= self.sample_rate <= 192_000
        )


def wav_header(rate: int, channels: int, data_size: int | None = None) -> bytes:
    """A 16-bit PCM WAV header; without ``data_size``, for a stream of unknown length."""
    block = channels * 2
    data = _UNKNOWN_SIZE if data_size is None else data_size
    riff = _UNKNOWN_SIZE if data_size is None else 36 + data_size
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * block,
        block,
        16,
        b"data",
        data,
    )


def split_wav_header(head: bytes) -> tuple[int, int, bytes] | None:
    """(rate, channels, samples after it) once a 16-bit WAV header is complete."""
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    pos, rate, channels = 12, 0, 0
    while len(head) >= pos + 8:
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        body = pos + 8
        if chunk_id == b"data":
            if not rate:
                raise ValueError("WAV stream without a format")
            return rate, channels, head[body:]
        if len(head) < body + size:
            return None
        if chunk_id == b"fmt ":
            _tag, channels, rate, _bps, _align, bits = struct.unpack_from(
                "<HHIIHH", head, body
            )
            if bits != 16:
                raise ValueError("only 16-bit WAV streams")
        pos = body + size + (size & 1)
    return None


class Encoder:
    """Audio frames or 16-bit PCM in, the target format out, chunk by chunk."""

    def __init__(self, target: AudioFormat) -> None:
        """Prepare to encode to ``target``."""
        if not target.producible:
            raise ValueError(f"cannot encode {target}")
        self.target = target
        self._layout = _LAYOUTS[target.channels]
        self._resampler: av.AudioResampler | None = None
        self._flac: Any = None
        if target.extension == FLAC:
            self._flac = av.CodecContext.create(FLAC, "w")
            self._flac.sample_rate = target.sample_rate
            self._flac.format = "s16"
            self._flac.layout = self._layout
            self._flac.options = {
                "frame_size": str(int(target.sample_rate * _BLOCK_SECONDS))
            }
            self._flac.open()

    def header(self, data_size: int | None = None) -> bytes:
        """What precedes the audio: a WAV header, or FLAC's marker and STREAMINFO."""
        if self._flac is None:
            return wav_header(self.target.sample_rate, self.target.channels, data_size)
        # STREAMINFO as the encoder made it (length and checksum unknown: zero),
        # flagged as the last metadata block.
        info = bytes(self._flac.extradata)
        return b"fLaC" + struct.pack(">I", 0x80000000 | len(info)) + info

    def encode_pcm(self, pcm: bytes, rate: int, channels: int) -> bytes:
        """Encoded audio for these 16-bit samples (FLAC: the blocks they completed)."""
        samples = len(pcm) // (2 * channels)
        if not samples:
            return b""
        frame = av.AudioFrame(format="s16", layout=_LAYOUTS[channels], samples=samples)
        plane = frame.planes[0]
        plane.update(pcm[: samples * 2 * channels].ljust(plane.buffer_size, b"\0"))
        frame.sample_rate = rate
        return self.encode_frame(frame)

    def encode_frame(self, frame: Any) -> bytes:
        """Encoded audio for a decoded frame, in any sample format."""
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key == ("s16", self._layout, self.target.sample_rate):
            return self._encode([frame])
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="s16", layout=self._layout, rate=self.target.sample_rate
            )
        frame.pts = None
        return self._encode(self._resampler.resample(frame))

    def flush(self) -> bytes:
        """The rest: what the resampler and the encoder still hold."""
        out = b""
        if self._resampler is not None:
            out = self._encode(self._resampler.resample(None))
            self._resampler = None
        if self._flac is not None:
            out += b"".join(bytes(p) for p in self._flac.encode(None))
        return out

    def _encode(self, frames: list[Any]) -> bytes:
        if self._flac is None:
            size = 2 * self.target.channels
            return b"".join(bytes(f.planes[0])[: f.samples * size] for f in frames)
        out = bytearray()
        for frame in frames:
            frame.pts = None
            for packet in self._flac.encode(frame):
                out += bytes(packet)
        return bytes(out)


async def encode_wav_stream(
    wav: AsyncGenerator[bytes], target: AudioFormat
) -> AsyncGenerator[bytes]:
    """A streaming 16-bit WAV in the target format, each chunk as it comes.

    The source is closed when this generator is (its reader went away).
    """
    async with contextlib.aclosing(wav):
        head = b""
        source: tuple[int, int] | None = None
        encoder = Encoder(target)
        async for chunk in wav:
            pcm = head + chunk
            if source is None:
                if (parsed := split_wav_header(pcm)) is None:
                    if len(pcm) > _WAV_HEADER_MAX:
                        raise ValueError("WAV header too long")
                    head = pcm
                    continue
                rate, channels, pcm = parsed
                source = (rate, channels)
                yield encoder.header()
            # A chunk may end inside a sample: keep that part for the next one.
            whole = len(pcm) - len(pcm) % (2 * source[1])
            head = pcm[whole:]
            if out := encoder.encode_pcm(pcm[:whole], *source):
                yield out
        if source is not None and (out := encoder.flush()):
            yield out


def transcode(data: bytes, target: AudioFormat) -> bytes:
    """A whole audio file (anything PyAV decodes) in the target format (blocking)."""
    encoder = Encoder(target)
    body = bytearray()
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(audio=0):
            body += encoder.encode_frame(frame)
    body += encoder.flush()
    size = len(body) if target.extension == WAV else None
    return encoder.header(size) + bytes(body)
