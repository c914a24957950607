"""Voice latency: Home Assistant's real pipeline vs the bare library (a pytest module).

Run by ``python -m benchmarks.voice`` (``scripts/bench voice``), never by the test suite
(pytest's testpaths is ``tests/``). It uses the suite's own parts: the HA test harness,
the in-process emulator, real ``AssistSatelliteEntity``s and the config flow. Both sides
talk to the same emulator in this process and event loop, so the emulator's send times
(``time.monotonic()``) and ours are on one clock.

Each round is one spoken turn per satellite kind (``voice_formats.KINDS``: one satellite
entity that takes each kind in turn, asks for its format and reads the TTS stream as
that kind's Home Assistant integration does), first with our entity as it is, then as
it was before it made formats itself ("converted": 16 kHz WAV, Home Assistant converts
it), then one turn of the bare library. Per turn, from the emulator's end-of-speech
event (in the turn's session):

- ``service``: the emulator's first reply audio frame (``output_audio_buffer.started``);
- ``done``: its ``response.done`` (the reply's text is complete);
- ``asked``: Home Assistant asks our TTS entity for the stream (its TTS stage starts);
- ``exit``: the first voiced audio leaving our TTS entity's stream (as encoded for the
  satellite);
- ``satellite``: the first voiced audio the satellite has (decoded as it arrives);
- ``bare``: the first voiced audio out of ``AudioTurn.reply_audio()``.

A turn that gives no figure (a session dropped on an overloaded host) is noted in the
samples' ``failures`` and left out.

Samples go to the JSON file named by ``ITANNIX_BENCH_OUT``; ``ITANNIX_BENCH_TURNS``
rounds (one warm-up unless ``ITANNIX_BENCH_WARMUP=0``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import contextlib
from dataclasses import asdict, dataclass, field
import json
import os
from pathlib import Path
import secrets
import time
from typing import Any, Final
import uuid

import aiohttp
from homeassistant import const as ha_const
from homeassistant.components import assist_pipeline, tts
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.components.tts.const import DATA_COMPONENT
from homeassistant.components.tts.entity import TTSAudioRequest, TTSAudioResponse
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)

from custom_components.itannix import tts as itannix_tts
from custom_components.itannix.realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
    AudioTurn,
    Credentials,
    ItanniXClient,
    RealtimeSession,
)
from custom_components.itannix.tts import ENTITY_MAKES_FORMAT, ItanniXTextToSpeech

# The suite's fixtures: the emulator, and an entry made through the real config flow.
from tests.audio import silence, speak
from tests.conftest import WORKSPACE_KEY, emulator  # noqa: F401
from tests.emulator import Emulator, Turn
from tests.emulator.vad import MIN_SILENCE_MS
from tests.integration.conftest import auto_enable_custom_integrations, config_entry  # noqa: F401
from tests.integration.satellite import VoiceSatellite, async_setup_satellites

from .voice_formats import (
    ESPHOME_CHUNK_SAMPLES,
    KINDS,
    FirstVoice,
    SatelliteKind,
    esphome_streams_wav,
    voiced,
)

AGENT: Final = "conversation.itannix_assistant"
STEP_TIMEOUT: Final = 60.0
TRANSCRIPT: Final = "turn on the kitchen light"
# Longer than Home Assistant's 60-character threshold, so its pipeline streams the reply
# to text-to-speech as it arrives (as it would for most real answers).
REPLY: Final = "Sure. The kitchen light is on now, and the oven is warming up."
# The service's timing, set to what a real one does (the emulator's knobs,
# tests/emulator/behaviour.py): the model starts its reply half a second after the end
# of speech; the transcript (a separate model) is there 0.3 s after the commit, before
# the reply's audio. (The emulator's pessimistic default sends it after the response.)
KNOBS: Final = {
    "think_time": 0.5,
    "transcription_delay": 0.3,
    "transcription_after_response": False,
}


@dataclass(slots=True)
class Samples:
    """Latencies in milliseconds from the emulator's end of speech."""

    ha_version: str = ha_const.__version__
    entity_makes_format: bool = ENTITY_MAKES_FORMAT
    esphome_streams: bool = True
    knobs: dict[str, Any] = field(default_factory=lambda: dict(KNOBS))
    vad_silence_ms: float = MIN_SILENCE_MS
    reply_chars: int = len(REPLY)
    stt_ours: list[float] = field(default_factory=list)
    stt_bare: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    bare_service: list[float] = field(default_factory=list)
    # Per satellite kind ("esphome"; "esphome/converted": Home Assistant converting,
    # as before our entity encoded formats): "service" (the first reply frame),
    # "done" (response.done), "exit", "satellite" lists.
    kinds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    reply_seconds: list[float] = field(default_factory=list)
    # Turns that gave no figure (the reason), e.g. a session dropped on a loaded host.
    failures: list[str] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)


class _EmulatorMark:
    """The emulator's events of one turn: its session's, from its end of speech."""

    def __init__(self, emu: Emulator) -> None:
        self._emulator = emu
        self._seen = {id(s): len(s.sent_events) for s in emu.sessions}

    def _events(self) -> list[tuple[str, float, int]]:
        return [
            (event["type"], at, id(session))
            for session in self._emulator.sessions
            for event, at in list(
                zip(session.sent_events, session.sent_times, strict=True)
            )[self._seen.get(id(session), 0) :]
        ]

    @property
    def stopped(self) -> tuple[float, int]:
        """When the turn's speech ended, and in which session."""
        stops = [
            (at, session)
            for kind, at, session in self._events()
            if kind == "input_audio_buffer.speech_stopped"
        ]
        assert stops, "the emulator sent no input_audio_buffer.speech_stopped"
        return min(stops)

    def sent_at(self, event_type: str) -> float:
        """The first such event of the turn's session since its end of speech.

        (Another session may still end a response cut earlier, e.g. the bare one's.)
        """
        stopped, turn_session = self.stopped
        times = [
            at
            for kind, at, session in self._events()
            if kind == event_type and session == turn_session and at >= stopped
        ]
        assert times, f"the emulator sent no {event_type}"
        return min(times)


class _StreamExit:
    """When the first voiced audio left our TTS entity's stream (this turn)."""

    def __init__(self) -> None:
        self.at: float | None = None
        # When Home Assistant asked the entity for the stream (its TTS stage started:
        # a streamed reply once its text passed 60 characters).
        self.asked: float | None = None

    def install(self) -> None:
        """Wrap the entity's streams (the bench's own process only)."""
        original = ItanniXTextToSpeech.async_stream_tts_audio
        exits = self

        async def timed(
            entity: ItanniXTextToSpeech, request: TTSAudioRequest
        ) -> TTSAudioResponse:
            if exits.asked is None:
                exits.asked = time.monotonic()
            response = await original(entity, request)
            return TTSAudioResponse(response.extension, exits.watch(response.data_gen))

        ItanniXTextToSpeech.async_stream_tts_audio = timed  # type: ignore[method-assign]

    async def watch(self, stream: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
        first = FirstVoice()
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                if first.feed(chunk) and self.at is None:
                    self.at = time.monotonic()
                yield chunk


class TimedSatellite(VoiceSatellite):
    """A satellite of one kind: asks for its format, reads the stream as it does."""

    kind: SatelliteKind = KINDS[0]

    def __init__(self, name: str) -> None:
        """Initialize with a name."""
        super().__init__(name)
        self.event_times: dict[PipelineEventType, float] = {}
        self.http: Any = None
        self.joins_stream = False
        self.playback: asyncio.Task[tuple[float, float]] | None = None
        self._token: str | None = None

    @property
    def tts_options(self) -> dict[str, Any] | None:
        """What the satellite asks text-to-speech for."""
        return self.kind.tts_options

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Note the time; start reading the reply's audio as the integration does."""
        now = time.monotonic()
        super().on_pipeline_event(event)
        if event.type is PipelineEventType.RUN_START:
            self.event_times.clear()
            self._token = None
        self.event_times.setdefault(event.type, now)
        data = event.data or {}
        output = data.get("tts_output") or {}
        if event.type is PipelineEventType.RUN_START:
            self._token = output.get("token")
        if self.playback is not None:
            return
        if self.kind.reads == "url":
            # A device given the URL (run-start names it when the reply streams).
            if url := output.get("url"):
                self.playback = self.hass.async_create_task(self._fetch(url))
            return
        streaming_early = (
            event.type is PipelineEventType.INTENT_PROGRESS
            and self.kind.early
            and data.get("tts_start_streaming")
        )
        if streaming_early or event.type is PipelineEventType.TTS_END:
            token = output.get("token") or self._token
            if token and (stream := tts.async_get_stream(self.hass, token)):
                self.playback = self.hass.async_create_task(self._read(stream))

    async def _fetch(self, url: str) -> tuple[float, float]:
        """A device fetching the TTS URL: when its first voice came, seconds heard."""
        response = await self.http.get(url)
        assert response.status == 200, response.status
        first = FirstVoice()
        at: float | None = None
        async for received in response.content.iter_any():
            if first.feed(received) and at is None:
                at = time.monotonic()
        assert at is not None, "the reply's audio was silent"
        return at, first.bytes_of_audio / 2 / self.kind.sample_rate

    async def _read(self, stream: tts.ResultStream) -> tuple[float, float]:
        """The integration reading the stream in-process, as it passes audio on."""
        chunking = ESPHOME_CHUNK_SAMPLES if self.kind.key == "esphome" else None
        first = FirstVoice(chunking)
        at: float | None = None
        if self.joins_stream:
            # Home Assistant 2025.12's ESPHome satellite sends nothing before the
            # whole stream is in.
            data = b"".join([chunk async for chunk in stream.async_stream_result()])
            if first.feed(data):
                at = time.monotonic()
        else:
            async for chunk in stream.async_stream_result():
                if first.feed(chunk) and at is None:
                    at = time.monotonic()
        assert at is not None, "the reply's audio was silent"
        return at, first.bytes_of_audio / 2 / self.kind.sample_rate


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
    exits: _StreamExit,
    speech: bytes,
) -> dict[str, float]:
    """One spoken turn through the pipeline, in ms from the end of speech."""
    emu.assistant().add_turn(Turn(transcript=TRANSCRIPT, reply=REPLY))
    mark = _EmulatorMark(emu)
    satellite.playback = None
    exits.at = exits.asked = None
    async with asyncio.timeout(STEP_TIMEOUT):
        await satellite.talk(speech)
        if satellite.playback is None:
            run = "; ".join(
                f"{e.type.value} {str(e.data)[:160]}" for e in satellite.events[-12:]
            )
            raise AssertionError(f"{satellite.kind.key} read no reply audio: {run}")
        first_voice, seconds = await satellite.playback
        # Whatever the reply left running (its cache, the turn) is done.
        await hass.async_block_till_done(wait_background_tasks=True)
    stt_text = satellite.event_data(PipelineEventType.STT_END)["stt_output"]["text"]
    assert stt_text == TRANSCRIPT, stt_text
    assert exits.at is not None, "no voice left our TTS stream"
    assert exits.asked is not None
    stopped, _session = mark.stopped
    return {
        "stt": 1000 * (satellite.event_times[PipelineEventType.STT_END] - stopped),
        "service": 1000 * (mark.sent_at("output_audio_buffer.started") - stopped),
        "done": 1000 * (mark.sent_at("response.done") - stopped),
        "asked": 1000 * (exits.asked - stopped),
        "exit": 1000 * (exits.at - stopped),
        "satellite": 1000 * (first_voice - stopped),
        "seconds": seconds,
    }


async def _turn_or_failure(
    hass: HomeAssistant,
    emu: Emulator,
    satellite: TimedSatellite,
    exits: _StreamExit,
    speech: bytes,
    samples: Samples,
) -> dict[str, float] | None:
    """A turn's figures, or None (noted in the samples) when it gave none."""
    try:
        return await _turn_ours(hass, emu, satellite, exits, speech)
    except (AssertionError, TimeoutError) as err:
        samples.failures.append(f"{satellite.kind.key}: {err!r}"[:300])
        if satellite.playback is not None:
            satellite.playback.cancel()
        return None


async def _first_voice(turn: AudioTurn) -> float:
    async for chunk in turn.reply_audio():
        if voiced(chunk):
            return time.monotonic()
    raise AssertionError("the reply's audio was silent")


async def _turn_bare(
    emu: Emulator, session: RealtimeSession, speech: bytes
) -> dict[str, float]:
    """One spoken turn with the library alone, in ms from the end of speech."""
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
    stopped, _session = mark.stopped
    return {
        "stt": 1000 * (heard - stopped),
        "service": 1000 * (mark.sent_at("output_audio_buffer.started") - stopped),
        "first": 1000 * (first_voice - stopped),
    }


def _record(samples: Samples, key: str, turn: dict[str, float]) -> None:
    per_kind = samples.kinds.setdefault(
        key, {"service": [], "done": [], "asked": [], "exit": [], "satellite": []}
    )
    for name, values in per_kind.items():
        values.append(turn[name])
    samples.stt_ours.append(turn["stt"])
    if key == "esphome":
        samples.reply_seconds.append(turn["seconds"])


class _Converting:
    """Our entity as it was before it encoded formats: 16 kHz WAV, HA converts it."""

    def __init__(self, hass: HomeAssistant) -> None:
        component = hass.data[DATA_COMPONENT]
        entity = component.get_entity("tts.itannix_voice")
        assert entity is not None
        self._entity = entity
        self._options = entity.supported_options

    def __call__(self, converting: bool) -> None:
        self._entity._attr_supported_options = (  # noqa: SLF001
            [tts.ATTR_VOICE] if converting else self._options
        )
        itannix_tts.requested_format = (  # type: ignore[assignment]
            _no_format if converting else _REQUESTED_FORMAT
        )


_REQUESTED_FORMAT: Final = itannix_tts.requested_format


def _no_format(_options: Any) -> None:
    return None


async def test_voice_latency(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_ws_client: WebSocketGenerator,
    emulator: Emulator,  # noqa: F811
    config_entry: ConfigEntry,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Interleaved spoken turns, each satellite kind then bare, one session each."""
    turns = int(os.environ.get("ITANNIX_BENCH_TURNS", "5"))
    warmups = int(os.environ.get("ITANNIX_BENCH_WARMUP", "1"))
    out = os.environ.get("ITANNIX_BENCH_OUT")
    speech = silence(0.2) + speak("Turn on the kitchen light.", tmp_path) + silence(1.0)
    for knob, value in KNOBS.items():
        setattr(emulator.behaviour, knob, value)
    samples = Samples(load_before=list(os.getloadavg()))
    samples.esphome_streams = esphome_streams_wav()

    exits = _StreamExit()
    exits.install()
    await _set_preferred_pipeline(hass, hass_ws_client)
    # One satellite that takes each kind in turn: its conversation (and so its
    # realtime session) is kept across turns, as the bare side's is.
    (satellite,) = await async_setup_satellites(hass, "Bench", kind=TimedSatellite)
    satellite.http = await hass_client()
    converting = _Converting(hass)
    modes = ["", "/converted"]
    async with aiohttp.ClientSession() as session_http:
        client = ItanniXClient(
            session_http,
            emulator.url,
            Credentials(str(uuid.uuid4()), secrets.token_hex(24), WORKSPACE_KEY),
        )
        session = await RealtimeSession.open(
            client, input_transcription_model=DEFAULT_TRANSCRIPTION_MODEL
        )
        try:
            for i in range(warmups + turns):
                ours = []
                for mode in modes:
                    converting(mode == "/converted")
                    for kind in KINDS:
                        satellite.kind = kind
                        satellite.joins_stream = (
                            kind.key == "esphome" and not samples.esphome_streams
                        )
                        turn = await _turn_or_failure(
                            hass, emulator, satellite, exits, speech, samples
                        )
                        if turn is not None:
                            ours.append((kind.key + mode, turn))
                converting(False)
                bare = await _turn_bare(emulator, session, speech)
                if i < warmups:
                    continue
                for key, turn in ours:
                    _record(samples, key, turn)
                samples.stt_bare.append(bare["stt"])
                samples.bare.append(bare["first"])
                samples.bare_service.append(bare["service"])
        finally:
            await session.close()
    samples.load_after = list(os.getloadavg())
    if out:
        await hass.async_add_executor_job(
            Path(out).write_text, json.dumps(asdict(samples)), "utf-8"
        )
