"""Voice latency: Home Assistant's real pipeline vs the bare library (a pytest module).

Run by ``python -m benchmarks.voice`` (``scripts/bench voice``), never by the test suite
(pytest's testpaths is ``tests/``). It uses the suite's own parts: the HA test harness,
the in-process emulator, a real ``AssistSatelliteEntity`` and the config flow. Both sides
talk to the same emulator in this process and event loop, so the emulator's send times
(``time.monotonic()``) and ours are on one clock. Samples go to the JSON file named by
``ITANNIX_BENCH_OUT``; ``ITANNIX_BENCH_TURNS`` turns per side (one warm-up each unless
``ITANNIX_BENCH_WARMUP=0``).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
import json
import os
from pathlib import Path
import secrets
import struct
import time
from typing import Any, Final
import uuid

import aiohttp
from homeassistant.components import assist_pipeline
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import numpy as np
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)

from custom_components.itannix.realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
    AudioTurn,
    Credentials,
    ItanniXClient,
    RealtimeSession,
)

# The suite's fixtures: the emulator, and an entry made through the real config flow.
from tests.audio import silence, speak
from tests.conftest import WORKSPACE_KEY, emulator  # noqa: F401
from tests.emulator import Emulator, Turn
from tests.integration.conftest import auto_enable_custom_integrations, config_entry  # noqa: F401
from tests.integration.satellite import VoiceSatellite, async_setup_satellites

AGENT: Final = "conversation.itannix_assistant"
STEP_TIMEOUT: Final = 60.0
TRANSCRIPT: Final = "turn on the kitchen light"
# Longer than Home Assistant's 60-character threshold, so its pipeline streams the reply
# to text-to-speech as it arrives (as it would for most real answers).
REPLY: Final = "Sure. The kitchen light is on now, and the oven is warming up."
# A 16-bit sample louder than this is the assistant's voice, not the silence the
# emulator sends between replies (Opus leaves digital silence near zero).
VOICED_PEAK: Final = 300


@dataclass(slots=True)
class Samples:
    """Latencies in milliseconds, ours (through Home Assistant) and bare."""

    stt_ours: list[float] = field(default_factory=list)
    stt_bare: list[float] = field(default_factory=list)
    tts_ours: list[float] = field(default_factory=list)  # WAV as the entity streams it
    tts_converted: list[float] = field(default_factory=list)  # after HA's ffmpeg
    tts_bare: list[float] = field(default_factory=list)
    reply_seconds_ours: list[float] = field(default_factory=list)
    reply_chars: int = len(REPLY)


def _voiced(pcm: bytes) -> bool:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16)
    return bool(samples.size) and int(np.abs(samples.astype(np.int32)).max()) > (
        VOICED_PEAK
    )


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


class _EmulatorMark:
    """The emulator's events sent after this point, with their send times."""

    def __init__(self, emu: Emulator) -> None:
        self._emulator = emu
        self._seen = {id(s): len(s.sent_events) for s in emu.sessions}

    def sent_at(self, event_type: str) -> float:
        times = [
            at
            for session in self._emulator.sessions
            for event, at in list(
                zip(session.sent_events, session.sent_times, strict=True)
            )[self._seen.get(id(session), 0) :]
            if event["type"] == event_type
        ]
        assert times, f"the emulator sent no {event_type}"
        return min(times)


class TimedSatellite(VoiceSatellite):
    """A satellite that notes when each pipeline event came, and plays the reply.

    Like a streaming satellite, it fetches the reply's audio URL as soon as the
    pipeline names it, and notes when the first voiced sample arrives.
    """

    def __init__(self, name: str) -> None:
        """Initialize with a name."""
        super().__init__(name)
        self.event_times: dict[PipelineEventType, float] = {}
        self.http: Any = None
        self.playback: asyncio.Task[tuple[float, float]] | None = None
        # Any WAV will do (instead of 16 kHz mono 16-bit WAV, as ESPHome asks).
        self.takes_any_wav = False

    @property
    def tts_options(self) -> dict[str, Any] | None:
        """What the satellite asks text-to-speech for."""
        if self.takes_any_wav:
            return {"preferred_format": "wav"}
        return super().tts_options

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Note the time; start playing once the reply's URL is known."""
        now = time.monotonic()
        super().on_pipeline_event(event)
        if event.type is PipelineEventType.RUN_START:
            self.event_times.clear()
        self.event_times.setdefault(event.type, now)
        url = (event.data or {}).get("tts_output", {}).get("url")
        if url and self.playback is None:
            self.playback = self.hass.async_create_task(self._play(url))

    async def _play(self, url: str) -> tuple[float, float]:
        """Return when the first voiced audio arrived, and the seconds of audio."""
        first: float | None = None
        head = bytearray()
        data_at: int | None = None
        audio = 0
        response = await self.http.get(url)
        assert response.status == 200, response.status
        async for received in response.content.iter_any():
            now = time.monotonic()
            samples = received
            if data_at is None:
                head += received
                if (data_at := _wav_data_offset(bytes(head))) is None:
                    continue
                samples = bytes(head[data_at:])
            audio += len(samples)
            if first is None and _voiced(samples):
                first = now
        assert first is not None, "the reply's audio was silent"
        return first, audio / 32_000


async def _set_preferred_pipeline(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator
) -> None:
    # Views register before the websocket client starts (and freezes) the web app.
    assert await async_setup_component(hass, "assist_satellite", {})
    (pipeline,) = [
        p
        for p in assist_pipeline.async_get_pipelines(hass)
        if p.conversation_engine == AGENT
    ]
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "assist_pipeline/pipeline/set_preferred", "pipeline_id": pipeline.id}
    )
    assert (await client.receive_json())["success"]


async def _turn_ours(
    hass: HomeAssistant,
    emu: Emulator,
    satellite: TimedSatellite,
    speech: bytes,
) -> tuple[float, float, float]:
    """One spoken turn through the pipeline: STT ms, TTS ms, seconds of reply audio."""
    emu.assistant().add_turn(Turn(transcript=TRANSCRIPT, reply=REPLY))
    mark = _EmulatorMark(emu)
    satellite.playback = None
    async with asyncio.timeout(STEP_TIMEOUT):
        await satellite.talk(speech)
        assert satellite.playback is not None, "the pipeline named no reply audio"
        first_voice, seconds = await satellite.playback
        # Whatever the reply left running (its cache, the turn) is done.
        await hass.async_block_till_done(wait_background_tasks=True)
    stt_text = satellite.event_data(PipelineEventType.STT_END)["stt_output"]["text"]
    assert stt_text == TRANSCRIPT, stt_text
    stt_end = satellite.event_times[PipelineEventType.STT_END]
    return (
        1000 * (stt_end - mark.sent_at("input_audio_buffer.speech_stopped")),
        1000 * (first_voice - mark.sent_at("output_audio_buffer.started")),
        seconds,
    )


async def _first_voice(turn: AudioTurn) -> float:
    async for chunk in turn.reply_audio():
        if _voiced(chunk):
            return time.monotonic()
    raise AssertionError("the reply's audio was silent")


async def _turn_bare(
    emu: Emulator, session: RealtimeSession, speech: bytes
) -> tuple[float, float]:
    """One spoken turn with the library alone: STT ms, TTS ms."""
    emu.assistant().add_turn(Turn(transcript=TRANSCRIPT, reply=REPLY))
    mark = _EmulatorMark(emu)
    async with asyncio.timeout(STEP_TIMEOUT):
        turn = await session.start_audio_turn()
        listening = asyncio.ensure_future(_first_voice(turn))
        try:
            turn.feed_audio(speech)
            transcript = await turn.transcript()
            heard = time.monotonic()
            first_voice = await listening
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        # Measured: cut the rest of the reply (only Home Assistant's side plays it out).
        await turn.cancel()
        await turn.wait()
    assert transcript == TRANSCRIPT, transcript
    return (
        1000 * (heard - mark.sent_at("input_audio_buffer.speech_stopped")),
        1000 * (first_voice - mark.sent_at("output_audio_buffer.started")),
    )


async def test_voice_latency(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_ws_client: WebSocketGenerator,
    emulator: Emulator,  # noqa: F811
    config_entry: ConfigEntry,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Interleaved spoken turns, ours then bare, on one session per side."""
    turns = int(os.environ.get("ITANNIX_BENCH_TURNS", "8"))
    warmups = int(os.environ.get("ITANNIX_BENCH_WARMUP", "1"))
    out = os.environ.get("ITANNIX_BENCH_OUT")
    speech = silence(0.2) + speak("Turn on the kitchen light.", tmp_path) + silence(1.0)

    await _set_preferred_pipeline(hass, hass_ws_client)
    converted, direct = await async_setup_satellites(
        hass, "Bench 16 kHz", "Bench WAV", kind=TimedSatellite
    )
    # One satellite asks for 16 kHz mono 16-bit WAV, as ESPHome ones do: Home Assistant
    # up to 2026.10 then converts the stream with ffmpeg, even though it already is that
    # (2026.11 passes it through). The other takes any WAV, so Home Assistant passes our
    # stream on as it is.
    direct.takes_any_wav = True
    converted.http = direct.http = await hass_client()
    samples = Samples()
    async with aiohttp.ClientSession() as http:
        client = ItanniXClient(
            http,
            emulator.url,
            Credentials(str(uuid.uuid4()), secrets.token_hex(24), WORKSPACE_KEY),
        )
        session = await RealtimeSession.open(
            client, input_transcription_model=DEFAULT_TRANSCRIPTION_MODEL
        )
        try:
            for i in range(warmups + turns):
                stt, tts, seconds = await _turn_ours(hass, emulator, direct, speech)
                stt2, tts2, _ = await _turn_ours(hass, emulator, converted, speech)
                bare_stt, bare_tts = await _turn_bare(emulator, session, speech)
                if i < warmups:
                    continue
                samples.stt_ours += [stt, stt2]
                samples.tts_ours.append(tts)
                samples.tts_converted.append(tts2)
                samples.reply_seconds_ours.append(seconds)
                samples.stt_bare.append(bare_stt)
                samples.tts_bare.append(bare_tts)
        finally:
            await session.close()
    if out:
        await hass.async_add_executor_job(
            Path(out).write_text, json.dumps(asdict(samples)), "utf-8"
        )
