"""Each satellite gets the assistant's voice in the format it asks for, as it comes.

ESPHome satellites ask for 16 kHz mono 16-bit WAV, Wyoming ones for 22.05 kHz WAV, a
Voice PE for its media player's announcement format (FLAC at 48 kHz). The satellite
plays what Home Assistant's TTS stream gives it, so that is what these tests decode.
"""

from __future__ import annotations

import io
from pathlib import Path
import time
from typing import Any
import wave

import av
from homeassistant.components import tts
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from tests.audio import decode_pcm16k, rms, similarity
from tests.emulator import Emulator, Turn

from .helpers import until
from .satellite import async_setup_satellites
from .test_voice import pipeline_id, reference_voice, utterance  # noqa: F401

REPLY = "Sure. The kitchen light is on now, and the oven is warming up."


def _options(extension: str, rate: int) -> dict[str, Any]:
    return {
        tts.ATTR_PREFERRED_FORMAT: extension,
        tts.ATTR_PREFERRED_SAMPLE_RATE: rate,
        tts.ATTR_PREFERRED_SAMPLE_CHANNELS: 1,
        tts.ATTR_PREFERRED_SAMPLE_BYTES: 2,
    }


SATELLITES = {
    "esphome": _options("wav", 16_000),
    "wyoming": _options("wav", 22_050),
    "voice_pe": _options("flac", 48_000),
}


def _decoded(data: bytes) -> tuple[str, int, int, float]:
    """Container, sample rate, channels and seconds of an audio file."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return (
            container.format.name,
            stream.sample_rate,
            stream.codec_context.channels,
            samples / stream.sample_rate,
        )


async def _read_as_it_comes(
    hass_client: ClientSessionGenerator, url: str
) -> tuple[bytes, float, float]:
    """The body of a TTS URL, when its audio began to come, and when it ended."""
    client = await hass_client()
    response = await client.get(url)
    assert response.status == 200
    body = bytearray()
    first: float | None = None
    async for chunk in response.content.iter_any():
        body += chunk
        # Past any header: the first bytes of audio.
        if first is None and len(body) > 1024:
            first = time.monotonic()
    assert first is not None
    return bytes(body), first, time.monotonic()


@pytest.mark.parametrize("kind", list(SATELLITES))
async def test_each_satellite_gets_its_own_format_as_the_reply_comes(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    pipeline_id: str,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    """The reply plays in the asked format and starts well before it ends."""
    options = SATELLITES[kind]
    (satellite,) = await async_setup_satellites(hass, f"{kind} satellite")
    # As the satellite integrations set it.
    satellite._attr_tts_options = options
    urls: list[str] = []
    listen = satellite.on_pipeline_event

    def on_event(event: Any) -> None:
        # A streaming satellite fetches the reply's URL as soon as the run names it.
        listen(event)
        url = (event.data or {}).get("tts_output", {}).get("url")
        if url and not urls:
            urls.append(url)

    satellite.on_pipeline_event = on_event  # type: ignore[method-assign]
    # The transcript before the reply's end (also documented): the pipeline's TTS
    # stage, whose stream this test times, then starts while the reply still plays.
    emulator.behaviour.transcription_after_response = False
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply=REPLY)
    )
    task = hass.async_create_task(
        satellite.talk(utterance("Turn on the kitchen light.", tmp_path))
    )
    await until(lambda: bool(urls))
    body, first, end = await _read_as_it_comes(hass_client, urls[0])
    await task

    container, rate, channels, seconds = _decoded(body)
    assert container == options[tts.ATTR_PREFERRED_FORMAT]
    assert (rate, channels) == (options[tts.ATTR_PREFERRED_SAMPLE_RATE], 1)
    assert seconds > 2
    played = decode_pcm16k(body)
    assert rms(played) > 500
    assert similarity(played, await reference_voice(REPLY)) > 0.6
    # Streamed as it is spoken: most of the reply was still to come when its first
    # audio arrived. (Home Assistant's ffmpeg up to 2026.10 holds a live WAV stream
    # back for seconds: as measured here, to its end.)
    assert end - first > 0.6 * seconds, (end - first, seconds)
    if container == "wav":
        # As Wyoming reads it: the header with Python's wave module.
        with wave.open(io.BytesIO(body), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (
                rate,
                1,
                2,
            )


@pytest.mark.parametrize("kind", list(SATELLITES))
async def test_synthesized_text_comes_in_the_asked_format(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    kind: str,
) -> None:
    """An announcement synthesized by the REST voice plays on each satellite too."""
    options = SATELLITES[kind]
    stream = tts.async_create_stream(
        hass, "tts.itannix_voice", language="en", options=options
    )
    stream.async_set_message("The laundry is done.")
    audio = b"".join([chunk async for chunk in stream.async_stream_result()])

    container, rate, channels, seconds = _decoded(audio)
    assert stream.extension == options[tts.ATTR_PREFERRED_FORMAT] == container
    assert (rate, channels) == (options[tts.ATTR_PREFERRED_SAMPLE_RATE], 1)
    assert seconds > 0.5
    pcm = decode_pcm16k(audio)
    assert rms(pcm) > 500
    assert similarity(pcm, await reference_voice("The laundry is done.")) > 0.6
