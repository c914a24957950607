"""What the voice benchmark's satellites ask for, and how it hears their first voice.

Three satellites, as Home Assistant's own integrations set their TTS options
(``tts_options`` of their ``AssistSatelliteEntity``) and read the TTS stream:

- ESPHome without a media player: WAV 16 kHz mono 16-bit, read in-process from
  ``tts.async_get_stream(token).async_stream_result()`` once ``tts-end`` names the
  token, and sent to the device in 512-sample chunks (since 2026.x's ``stream_wav``;
  Home Assistant 2025.12 joins the whole stream before sending any of it).
- Voice PE (ESPHome with a media player): its announcement format, FLAC 48 kHz mono,
  fetched by the device from the TTS URL that ``run-start`` names.
- Wyoming: WAV 22.05 kHz mono 16-bit, read from ``async_stream_result()`` once
  ``intent-progress`` says ``tts_start_streaming`` (else at ``tts-end``).

``FirstVoice`` decodes a WAV or FLAC byte stream as it arrives and says when the first
voiced sample is in it.
"""

from __future__ import annotations

from dataclasses import dataclass
import importlib.util
from pathlib import Path
import struct
from typing import Any, Final

import av
import numpy as np

# A 16-bit sample louder than this is the assistant's voice, not the silence the
# emulator sends between replies (Opus leaves digital silence near zero).
VOICED_PEAK: Final = 300
# ESPHome's stream_wav hands the device 512 samples at a time.
ESPHOME_CHUNK_SAMPLES: Final = 512


@dataclass(frozen=True, slots=True)
class SatelliteKind:
    """One kind of satellite: what it asks for and how it reads the stream."""

    key: str
    label: str
    extension: str
    sample_rate: int
    # "url": fetches the TTS URL over HTTP; "stream": reads the ResultStream
    # in-process (from "tts-end", or "intent-progress" when it streams early).
    reads: str
    early: bool = False
    # The service's event the satellite's first audio cannot precede: ESPHome reads
    # from tts-end, which follows the conversation stage, which ends with the reply.
    waits_for: str = "output_audio_buffer.started"

    @property
    def tts_options(self) -> dict[str, Any]:
        """The satellite entity's tts_options."""
        return {
            "preferred_format": self.extension,
            "preferred_sample_rate": self.sample_rate,
            "preferred_sample_channels": 1,
            "preferred_sample_bytes": 2,
        }


KINDS: Final = (
    SatelliteKind(
        "esphome",
        "ESPHome (WAV 16 kHz)",
        "wav",
        16_000,
        "stream",
        waits_for="response.done",
    ),
    SatelliteKind("voice_pe", "Voice PE (FLAC 48 kHz)", "flac", 48_000, "url"),
    SatelliteKind("wyoming", "Wyoming (WAV 22.05 kHz)", "wav", 22_050, "stream", True),
)


def esphome_streams_wav() -> bool:
    """Whether this Home Assistant's ESPHome satellite streams TTS as it comes.

    Read from its source (the integration needs aioesphomeapi to import): 2025.12
    joins the whole stream first (``b"".join``), later releases use ``stream_wav``.
    """
    spec = importlib.util.find_spec("homeassistant")
    assert spec is not None
    assert spec.origin is not None
    source = Path(spec.origin).parent / "components/esphome/assist_satellite.py"
    text = source.read_text(encoding="utf-8")
    return "stream_wav(" in text


def voiced(pcm: bytes) -> bool:
    """Whether 16-bit PCM holds the assistant's voice."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16)
    return bool(samples.size) and int(np.abs(samples.astype(np.int32)).max()) > (
        VOICED_PEAK
    )


class FirstVoice:
    """Decode a WAV or FLAC stream as it arrives; tell when voice first appears."""

    def __init__(self, chunk_samples: int | None = None) -> None:
        """``chunk_samples``: the reader passes audio on only in chunks of this size."""
        self._head = bytearray()
        self._kind: str | None = None
        self._flac: Any = None
        self._frames: _FlacFrames | None = None
        self._pending = bytearray()
        self._chunk_bytes = chunk_samples * 2 if chunk_samples else 0
        self.bytes_of_audio = 0
        self.found = False

    def feed(self, data: bytes) -> bool:
        """Feed the next bytes; True the first time voiced audio is complete."""
        if self.found:
            self.bytes_of_audio += len(data)
            return False
        if self._kind is None:
            self._head += data
            data = self._start()
            if self._kind is None:
                return False
        pcm = self._pcm(data)
        self.bytes_of_audio += len(pcm)
        if self._chunk_bytes:
            self._pending += pcm
            whole = len(self._pending) // self._chunk_bytes * self._chunk_bytes
            pcm, self._pending = bytes(self._pending[:whole]), self._pending[whole:]
        self.found = voiced(pcm)
        return self.found

    def _start(self) -> bytes:
        head = bytes(self._head)
        if head[:4] == b"RIFF":
            offset = _wav_data_offset(head)
            if offset is None:
                return b""
            self._kind = "wav"
            return head[offset:]
        if head[:4] == b"fLaC":
            parsed = _flac_metadata(head)
            if parsed is None:
                return b""
            info, offset = parsed
            self._flac = av.CodecContext.create("flac", "r")
            self._flac.extradata = info
            self._frames = _FlacFrames()
            self._kind = "flac"
            return head[offset:]
        if len(head) >= 4:
            raise ValueError(f"not WAV or FLAC: {head[:4]!r}")
        return b""

    def _pcm(self, data: bytes) -> bytes:
        if self._kind == "wav" or not data:
            # (An empty parse would flush the FLAC parser.)
            return data
        out = bytearray()
        assert self._frames is not None
        for block in self._frames.feed(data):
            for frame in self._flac.decode(av.Packet(block)):
                out += bytes(frame.planes[0])[: frame.samples * 2]
        return bytes(out)


def _wav_data_offset(head: bytes) -> int | None:
    """Where a WAV stream's samples start, once its header has arrived."""
    offset = 12  # RIFF, size, WAVE
    while len(head) >= offset + 8:
        chunk_id = head[offset : offset + 4]
        (size,) = struct.unpack_from("<I", head, offset + 4)
        if chunk_id == b"data":
            return offset + 8
        offset += 8 + size + (size & 1)
    return None


def _flac_metadata(head: bytes) -> tuple[bytes, int] | None:
    """STREAMINFO and where the frames start, once the metadata has arrived."""
    offset = 4
    info = b""
    while len(head) >= offset + 4:
        (word,) = struct.unpack_from(">I", head, offset)
        last, kind, size = word >> 31, (word >> 24) & 0x7F, word & 0xFFFFFF
        if len(head) < offset + 4 + size:
            return None
        if kind == 0:
            info = head[offset + 4 : offset + 4 + size]
        offset += 4 + size
        if last:
            return info, offset
    return None


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16: Final = _crc16_table()


class _FlacFrames:
    """Split a FLAC byte stream into frames as each one completes.

    A device decodes each frame once its bytes are in. (FFmpeg's FLAC parser waits for
    ten frame headers before it trusts the first one: 200 ms of 20 ms blocks.) A frame
    ends where its CRC-16 (the frame's last two bytes) matches what precedes it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames = []
        while (end := self._frame_end()) is not None:
            frames.append(bytes(self._buffer[:end]))
            del self._buffer[:end]
        return frames

    def _frame_end(self) -> int | None:
        buf = self._buffer
        crc = 0
        for i in range(len(buf) - 1):
            # A frame may end before the next sync code, or at the end of the buffer.
            end = i + 2
            if (
                i >= 4
                and (
                    end == len(buf)
                    or (
                        buf[end] == 0xFF
                        and buf[end + 1 : end + 2] in (b"\xf8", b"\xf9")
                    )
                )
                and crc == (buf[i] << 8 | buf[i + 1])
            ):
                return end
            crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ buf[i]]
        return None
