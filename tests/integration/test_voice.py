"""Spoken turns from Assist satellites: real speech in, the assistant's own voice out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import itertools
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestClient
from homeassistant.components import assist_pipeline, conversation, media_source, stt
from homeassistant.components.assist_pipeline import PipelineEventType
from homeassistant.components.conversation.chat_log import async_subscribe_chat_logs
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import Context, HomeAssistant
from homeassistant.core_config import async_process_ha_core_config
from homeassistant.exceptions import ServiceValidationError
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)
from yarl import URL

from custom_components.itannix.const import CONF_MEDIA_PLAYER, DOMAIN
from custom_components.itannix.playback import HOME_ASSISTANT_SERVES_LIVE_AUDIO
from tests.audio import decode_pcm16k, rms, silence, similarity, speak
from tests.emulator import EmulatedSession, Emulator, FunctionCallSpec, Turn
from tests.emulator.voice import Synthesizer

from .helpers import until
from .satellite import (
    RecordingPlayer,
    VoiceSatellite,
    async_setup_satellites,
    microphone,
)

AGENT = "conversation.itannix_assistant"


@pytest.fixture
async def pipeline_id(
    hass: HomeAssistant, config_entry: ConfigEntry, hass_ws_client: WebSocketGenerator
) -> str:
    """The "ItanniX" pipeline the integration created, made the preferred one."""
    # Views register before the websocket client starts (and freezes) the web app.
    assert await async_setup_component(hass, "assist_satellite", {})
    assert await async_setup_component(hass, "media_player", {})
    assert await async_setup_component(hass, "media_source", {})
    pipelines = [
        p
        for p in assist_pipeline.async_get_pipelines(hass)
        if p.conversation_engine == AGENT
    ]
    assert [p.name for p in pipelines] == ["ItanniX"]
    pipeline = pipelines[0]
    assert pipeline.stt_engine == "stt.itannix_speech_to_text"
    assert pipeline.tts_engine == "tts.itannix_voice"
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "assist_pipeline/pipeline/set_preferred", "pipeline_id": pipeline.id}
    )
    assert (await client.receive_json())["success"]
    return pipeline.id


@pytest.fixture(autouse=True)
async def _replies_play_out(hass: HomeAssistant) -> AsyncIterator[None]:
    """Let the last reply's voice finish streaming, as a satellite playing it would."""
    yield
    await hass.async_block_till_done(wait_background_tasks=True)


@pytest.fixture
async def kitchen(hass: HomeAssistant, pipeline_id: str) -> VoiceSatellite:
    """One satellite using the ItanniX pipeline."""
    (satellite,) = await async_setup_satellites(hass, "Kitchen satellite")
    return satellite


def utterance(text: str, tmp_path: Path) -> bytes:
    """What a user says, then the pause that ends it."""
    return silence(0.3) + speak(text, tmp_path) + silence(1.2)


async def fetch_tts(
    hass_client: ClientSessionGenerator, satellite: VoiceSatellite
) -> bytes:
    """Download what the satellite would play, decoded to 16 kHz mono PCM."""
    url = satellite.event_data(PipelineEventType.TTS_END)["tts_output"]["url"]
    client = await hass_client()
    response = await client.get(url)
    assert response.status == 200
    return decode_pcm16k(await response.read())


async def fetch_played(hass: HomeAssistant, client: TestClient, media_id: str) -> bytes:
    """Fetch what a media player was given, as it would, decoded to 16 kHz mono PCM.

    A media source ID (Home Assistant 2026.11's TTS stream) is resolved first, as a
    player does; a URL is fetched as it is.
    """
    if media_source.is_media_source_id(media_id):
        media_id = (await media_source.async_resolve_media(hass, media_id, None)).url
    response = await client.get(URL(media_id).path_qs)
    assert response.status == 200
    return decode_pcm16k(await response.read())


async def reference_voice(text: str) -> bytes:
    """What the emulator's assistant says for ``text``, at 16 kHz."""
    from tests.audio import RATE

    pcm48 = await Synthesizer().synthesize(text)
    samples = memoryview(pcm48).cast("h")
    # 48 kHz to 16 kHz by taking every third sample: enough for a loudness envelope.
    return bytes(memoryview(bytes(samples[:: 48_000 // RATE])))


def voice_sessions(emulator: Emulator) -> list[EmulatedSession]:
    """Sessions that heard someone."""
    return [s for s in emulator.sessions if s.speech_started_count]


async def test_spoken_turn_plays_the_assistants_own_voice(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """Speech goes to the assistant; the satellite plays what the assistant said."""
    reply = "Sure. The kitchen light is on now, and the oven is warming up."
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply=reply)
    )
    await kitchen.talk(utterance("Turn on the kitchen light.", tmp_path))

    # The service heard real speech, through its own VAD.
    (session,) = voice_sessions(emulator)
    assert session.inbound_voiced_ms > 300
    assert session.input_transcription_enabled
    # The pipeline saw the service's transcript and the assistant's reply.
    assert kitchen.heard() == "turn on the kitchen light"
    assert kitchen.reply() == reply
    # What the satellite plays is the assistant's voice for that reply.
    played = await fetch_tts(hass_client, kitchen)
    assert len(played) > 16_000 * 2  # more than a second
    assert rms(played) > 500
    assert similarity(played, await reference_voice(reply)) > 0.6
    # No separate text-to-speech was asked for.
    assert not [r for r in emulator.requests if "text-to-speech" in r[1]]


async def test_turns_on_one_satellite_share_a_session(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """The conversation's context survives between turns: no reconnect per turn."""
    emulator.assistant().add_turn(Turn(transcript="my name is sam", reply="Hi Sam."))
    emulator.assistant().add_turn(
        Turn(transcript="what is my name", reply="You are Sam.")
    )
    await kitchen.talk(utterance("My name is Sam.", tmp_path))
    await kitchen.talk(utterance("What is my name?", tmp_path))
    assert kitchen.reply() == "You are Sam."
    assert len(voice_sessions(emulator)) == 1
    assert voice_sessions(emulator)[0].speech_started_count == 2


async def test_two_satellites_at_once_keep_their_own_turns(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """Each satellite gets the reply to what it heard, in its voice, concurrently."""
    kitchen, office = await async_setup_satellites(
        hass, "Kitchen satellite", "Office satellite"
    )
    replies = {
        "first thing": "One. This is the answer to the first thing you asked.",
        "second thing": "Two. Here is a rather different answer, for the second.",
    }
    for transcript, reply in replies.items():
        emulator.assistant().add_turn(Turn(transcript=transcript, reply=reply))
    await asyncio.gather(
        kitchen.talk(utterance("What is the weather?", tmp_path)),
        office.talk(utterance("Play some music.", tmp_path)),
    )
    heard = {}
    for satellite in (kitchen, office):
        transcript = satellite.heard()
        assert satellite.reply() == replies[transcript]
        heard[transcript] = await fetch_tts(hass_client, satellite)
    assert set(heard) == set(replies)
    assert len(voice_sessions(emulator)) == 2
    # Each satellite plays its own reply's voice, not the other's.
    for transcript, played in heard.items():
        other = next(t for t in replies if t != transcript)
        own = similarity(played, await reference_voice(replies[transcript]))
        assert own > 0.6
        assert own > similarity(played, await reference_voice(replies[other]))


async def test_other_agent_cancels_the_unused_reply(
    hass: HomeAssistant,
    emulator: Emulator,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """With Home Assistant's own agent picked, STT works and our reply is cancelled."""
    pipeline = assist_pipeline.async_get_pipelines(hass)
    ours = next(p for p in pipeline if p.id == pipeline_id)
    await assist_pipeline.async_update_pipeline(
        hass, ours, conversation_engine="conversation.home_assistant"
    )
    (satellite,) = await async_setup_satellites(hass, "Hall satellite")
    emulator.assistant().add_turn(
        Turn(transcript="what time is it", reply="A long reply nobody will hear. " * 4)
    )
    await satellite.talk(utterance("What time is it?", tmp_path))
    assert satellite.heard() == "what time is it"
    (session,) = voice_sessions(emulator)
    # The transcript may come after the reply was generated: then its voice, still
    # playing, is what gets cut.
    await until(
        lambda: any(
            e["type"] == "output_audio_buffer.cleared" for e in session.sent_events
        )
    )


async def test_abandoned_turn_leaves_nothing_behind(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """A pipeline cancelled mid-sentence: nothing is answered, the next turn works."""
    speech = utterance("Turn on the kitchen light.", tmp_path)
    talking = hass.async_create_task(kitchen.talk(speech))
    await until(lambda: bool(voice_sessions(emulator)))
    talking.cancel()
    await asyncio.gather(talking, return_exceptions=True)
    assert talking.cancelled()
    (abandoned,) = voice_sessions(emulator)
    # What the service had heard is dropped, so it never becomes an utterance.
    await until(
        lambda: any(
            e["type"] == "input_audio_buffer.clear" for e in abandoned.received_events
        )
    )

    emulator.assistant().add_turn(Turn(transcript="hello again", reply="Welcome back."))
    await kitchen.talk(utterance("Hello again.", tmp_path))
    assert kitchen.reply() == "Welcome back."
    # One answer in all: the next turn's. Since Home Assistant 2026.11 the next turn
    # continues the cancelled run's conversation, so it is asked in the same session;
    # before, a cancelled run ended its conversation and the next turn had a new one.
    answers = [
        event
        for session in voice_sessions(emulator)
        for event in session.sent_events
        if event["type"] == "response.created"
    ]
    assert len(answers) == 1


async def test_listening_leaves_the_chat_log_to_the_conversation_stage(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """Speech-to-text reads the conversation so far without opening its chat log.

    Since Home Assistant 2026.11 opening a chat log is a turn of the conversation: it
    fires chat log events, adds to the trace, and fails while another turn holds it.
    """
    emulator.assistant().add_turn(Turn(transcript="hi", reply="Hello."))
    emulator.assistant().add_turn(Turn(transcript="and again", reply="Hello again."))
    await kitchen.talk(utterance("Hi.", tmp_path))
    # How many pipeline events the satellite had seen at each chat log event.
    seen: list[int] = []
    unsubscribe = async_subscribe_chat_logs(
        hass, lambda _id, _type, _data: seen.append(len(kitchen.events))
    )
    try:
        await kitchen.talk(utterance("And again.", tmp_path))
    finally:
        unsubscribe()
    assert kitchen.reply() == "Hello again."
    types = [event.type for event in kitchen.events]
    intent_start = len(types) - types[::-1].index(PipelineEventType.INTENT_START)
    assert seen
    assert min(seen) >= intent_start, [types[n - 1] for n in seen]


async def test_new_wake_interrupts_the_assistant(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """Speaking over the assistant cuts its reply (cancel + clear) first."""
    emulator.assistant().add_turn(Turn(transcript="hi", reply="Hello."))
    emulator.assistant().add_turn(
        Turn(transcript="tell me a story", reply="Once upon a time, " * 12)
    )
    emulator.assistant().add_turn(Turn(transcript="stop", reply="Okay."))
    # A first exchange makes the satellite's conversation (and session) established.
    await kitchen.talk(utterance("Hi.", tmp_path))
    story = hass.async_create_task(
        kitchen.talk(utterance("Tell me a story.", tmp_path))
    )

    def speaking() -> bool:
        """The story (the second reply) has started playing."""
        sessions = voice_sessions(emulator)
        started = [
            e
            for e in (sessions[0].sent_events if sessions else [])
            if e["type"] == "output_audio_buffer.started"
        ]
        return len(started) == 2

    await until(speaking)
    # The user talks over the story: the satellite starts a new pipeline.
    await kitchen.talk(utterance("Stop.", tmp_path))
    await asyncio.gather(story, return_exceptions=True)
    (session,) = voice_sessions(emulator)
    types = [e["type"] for e in session.received_events]
    # The story is cut: its response cancelled, then its voice cleared.
    cancel = types.index("response.cancel")
    assert "output_audio_buffer.clear" in types[cancel:], types
    # The new turn's audio came after the cut.
    assert session.speech_started_count == 3
    assert kitchen.reply() == "Okay."


async def test_other_text_is_spoken_with_the_rest_api(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    config_entry: ConfigEntry,
) -> None:
    """An announcement is synthesized by ItanniX text-to-speech in its voice."""
    from homeassistant.components import tts

    stream = tts.async_create_stream(hass, "tts.itannix_voice", language="en")
    stream.async_set_message("The laundry is done.")
    audio = b"".join([chunk async for chunk in stream.async_stream_result()])
    pcm = decode_pcm16k(audio)
    assert rms(pcm) > 500
    assert [r for r in emulator.requests if "text-to-speech" in r[1]]
    assert similarity(pcm, await reference_voice("The laundry is done.")) > 0.6


async def test_other_text_uses_the_voice_chosen_in_the_options(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Text that is not a live reply is spoken in the voice picked in the options."""
    from homeassistant.components import tts

    from custom_components.itannix.const import CONF_IDLE_TIMEOUT, CONF_VOICE

    async def speak_text(text: str) -> str:
        stream = tts.async_create_stream(hass, "tts.itannix_voice", language="en")
        stream.async_set_message(text)
        assert b"".join([chunk async for chunk in stream.async_stream_result()])
        # The voice is in the path of the text-to-speech request.
        paths = [r[1] for r in emulator.requests if "text-to-speech" in r[1]]
        return paths[-1]

    # No voice chosen: the workspace's first one.
    assert await speak_text("The mail is here.") == (
        "/v1/app/text-to-speech/v_alloy/with-timestamps"
    )
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VOICE: "v_echo", CONF_IDLE_TIMEOUT: 300}
    )
    await hass.async_block_till_done()
    assert await speak_text("The dishwasher is done.") == (
        "/v1/app/text-to-speech/v_echo/with-timestamps"
    )


async def test_pipeline_speaks_other_text_in_the_options_voice(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry, pipeline_id: str
) -> None:
    """The created pipeline pins no voice: the options' voice is the one used.

    A voice picked in the pipeline editor afterwards is that pipeline's, and wins.
    """
    from homeassistant.components import tts

    from custom_components.itannix.const import CONF_IDLE_TIMEOUT, CONF_VOICE

    pipeline = assist_pipeline.async_get_pipeline(hass, pipeline_id)
    assert pipeline.tts_voice is None
    (satellite,) = await async_setup_satellites(hass, "Hall satellite")

    async def announce(text: str) -> str:
        """Announce on the satellite (its pipeline's text-to-speech); the voice used."""
        await hass.services.async_call(
            "assist_satellite",
            "announce",
            {"message": text, "preannounce": False},
            target={"entity_id": satellite.entity_id},
            blocking=True,
        )
        token = satellite.announcements[-1].tts_token
        assert token is not None
        stream = tts.async_get_stream(hass, token)
        assert stream is not None
        assert b"".join([chunk async for chunk in stream.async_stream_result()])
        paths = [r[1] for r in emulator.requests if "text-to-speech" in r[1]]
        return paths[-1].split("/")[-2]

    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VOICE: "v_echo", CONF_IDLE_TIMEOUT: 300}
    )
    await hass.async_block_till_done()
    assert await announce("The dishwasher is done.") == "v_echo"

    # Picked in the pipeline editor: that voice, whatever the options say.
    await assist_pipeline.async_update_pipeline(
        hass, assist_pipeline.async_get_pipeline(hass, pipeline_id), tts_voice="v_alloy"
    )
    assert await announce("The mail is here.") == "v_alloy"


async def _choose_player(hass: HomeAssistant, entry: ConfigEntry, player: str) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_MEDIA_PLAYER: player}
    )
    await hass.async_block_till_done()


async def test_replies_play_on_the_chosen_media_player(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_client_no_auth: ClientSessionGenerator,
    emulator: Emulator,
    config_entry: ConfigEntry,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """With a media player chosen, it announces the reply's live voice.

    On Home Assistant 2026.11 from Home Assistant's own TTS proxy (a TTS media source,
    resolved by the player as for ``tts.speak``); before, from the integration's signed
    single-use URL.
    """
    await async_process_ha_core_config(hass, {"internal_url": "http://127.0.0.1:8123"})
    speaker = RecordingPlayer("Living room speaker")
    (satellite,) = await async_setup_satellites(
        hass, "Hall satellite", players=[speaker]
    )
    await _choose_player(hass, config_entry, "media_player.living_room_speaker")
    reply = "The forecast says sunshine all afternoon, with a light breeze."
    emulator.assistant().add_turn(Turn(transcript="weather", reply=reply))

    await satellite.talk(utterance("What is the weather?", tmp_path))

    await until(lambda: bool(speaker.played))
    ((media_id, options),) = speaker.played
    assert options.get("announce") is True
    anonymous = await hass_client_no_auth()
    if HOME_ASSISTANT_SERVES_LIVE_AUDIO:
        assert media_id.startswith("media-source://tts/")
        resolved = await media_source.async_resolve_media(hass, media_id, None)
        assert resolved.mime_type == "audio/mpeg"
        response = await anonymous.get(resolved.url)
        assert response.status == 200
    else:
        parsed = URL(media_id)
        assert parsed.path.startswith("/api/itannix/audio/")
        assert "authSig" in parsed.query
        # Without the signature the audio is refused.
        assert (await anonymous.get(parsed.path)).status == 401
        response = await anonymous.get(parsed.path_qs)
        assert response.status == 200
        assert response.headers["Content-Type"] == "audio/wav"
    played = decode_pcm16k(await response.read())
    assert rms(played) > 500
    assert similarity(played, await reference_voice(reply)) > 0.6
    if not HOME_ASSISTANT_SERVES_LIVE_AUDIO:
        # The URL serves once.
        assert (await anonymous.get(parsed.path_qs)).status == 404
    # The satellite itself plays a moment of silence, not a second copy.
    on_satellite = await fetch_tts(hass_client, satellite)
    assert rms(on_satellite) < 50
    assert len(on_satellite) < 16_000  # under half a second


async def test_each_reply_on_the_media_player_is_its_own_live_voice(
    hass: HomeAssistant,
    hass_client_no_auth: ClientSessionGenerator,
    emulator: Emulator,
    config_entry: ConfigEntry,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """Two replies in a row play two recordings: each turn's own voice, never a cache."""
    await async_process_ha_core_config(hass, {"internal_url": "http://127.0.0.1:8123"})
    speaker = RecordingPlayer("Living room speaker")
    (satellite,) = await async_setup_satellites(
        hass, "Hall satellite", players=[speaker]
    )
    await _choose_player(hass, config_entry, "media_player.living_room_speaker")
    replies = ["It is sunny today.", "The kitchen light is on now, as you asked."]
    emulator.assistant().add_turn(Turn(transcript="weather", reply=replies[0]))
    emulator.assistant().add_turn(Turn(transcript="light", reply=replies[1]))
    anonymous = await hass_client_no_auth()

    heard: list[bytes] = []
    for index, words in enumerate(["What is the weather?", "Turn on the light."]):
        await satellite.talk(utterance(words, tmp_path))
        await until(lambda index=index: len(speaker.played) > index)
        heard.append(await fetch_played(hass, anonymous, speaker.played[index][0]))

    assert len({item[0] for item in speaker.played}) == 2
    for played, reply in zip(heard, replies, strict=True):
        assert similarity(played, await reference_voice(reply)) > 0.6
    assert similarity(heard[1], await reference_voice(replies[0])) < similarity(
        heard[1], await reference_voice(replies[1])
    )


async def test_a_repeated_short_reply_still_plays_on_the_media_player(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_client_no_auth: ClientSessionGenerator,
    emulator: Emulator,
    config_entry: ConfigEntry,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """The same short reply twice, with a media player chosen: it plays both times.

    Home Assistant answers the second from its TTS cache (the satellite's moment of
    silence of the first) without asking the TTS entity; the live voice still goes to
    the player instead of being let go.
    """
    await async_process_ha_core_config(hass, {"internal_url": "http://127.0.0.1:8123"})
    speaker = RecordingPlayer("Living room speaker")
    (satellite,) = await async_setup_satellites(
        hass, "Hall satellite", players=[speaker]
    )
    await _choose_player(hass, config_entry, "media_player.living_room_speaker")
    reply = "You are welcome."
    for _ in range(2):
        emulator.assistant().add_turn(Turn(transcript="thanks", reply=reply))
    anonymous = await hass_client_no_auth()

    for index in range(2):
        await satellite.talk(utterance("Thanks.", tmp_path))
        assert satellite.reply() == reply
        await until(lambda index=index: len(speaker.played) > index, timeout=10)
        played = await fetch_played(hass, anonymous, speaker.played[index][0])
        assert similarity(played, await reference_voice(reply)) > 0.6
        # The satellite itself has a moment of silence each time.
        on_satellite = await fetch_tts(hass_client, satellite)
        assert rms(on_satellite) < 50
        await hass.async_block_till_done(wait_background_tasks=True)


async def test_start_conversation_speaks_first_then_listens(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """An automation's opening line is spoken, then the answer is heard.

    The assistant that answers knows what it asked.
    """
    (satellite,) = await async_setup_satellites(hass, "Bedroom satellite")
    satellite.answer = utterance("Yes please.", tmp_path)
    opening = "Good morning! Shall I open the blinds?"
    emulator.assistant().add_turn(Turn(transcript="yes please", reply="Opening them."))

    await hass.services.async_call(
        DOMAIN,
        "start_conversation",
        {"entity_id": satellite.entity_id, "message": opening},
        blocking=True,
    )

    (announcement,) = satellite.announcements
    assert announcement.message == opening
    # The opening is spoken by the ItanniX voice (text-to-speech API).
    assert [r for r in emulator.requests if "text-to-speech" in r[1]]
    # The user's answer went through the assistant, which had been told its opening.
    assert satellite.reply() == "Opening them."
    (session,) = voice_sessions(emulator)
    said = [
        part["text"]
        for event in session.received_events
        if event["type"] == "conversation.item.create"
        and event["item"].get("role") == "assistant"
        for part in event["item"]["content"]
    ]
    assert said == [opening]


async def test_a_satellites_extra_prompt_holds_for_its_next_turns(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """What an automation told the satellite's conversation stays in its prompt.

    Home Assistant hands the extra prompt to the conversation stage, after the
    service answered the first reply; the turns after it are told it before the user
    speaks.
    """
    # No LLM API: core's chat log is not asked to keep the extra prompt itself.
    flow = await hass.config_entries.options.async_init(config_entry.entry_id)
    await hass.config_entries.options.async_configure(
        flow["flow_id"], {CONF_LLM_HASS_API: []}
    )
    await hass.async_block_till_done()
    (satellite,) = await async_setup_satellites(hass, "Bedroom satellite")
    satellite.answer = utterance("Yes please.", tmp_path)
    emulator.assistant().add_turn(Turn(transcript="yes please", reply="Opening them."))
    emulator.assistant().add_turn(
        Turn(transcript="thank you", reply="You are welcome.")
    )

    await hass.services.async_call(
        "assist_satellite",
        "start_conversation",
        {
            "entity_id": satellite.entity_id,
            "start_message": "Shall I open the blinds?",
            "extra_system_prompt": "The user is in the bedroom.",
        },
        blocking=True,
    )
    assert satellite.reply() == "Opening them."
    (session,) = voice_sessions(emulator)
    told = len(session.received_events)
    await satellite.talk(utterance("Thank you.", tmp_path))

    assert satellite.reply() == "You are welcome."
    assert voice_sessions(emulator) == [session]
    assert session.instructions is not None
    assert "The user is in the bedroom." in session.instructions
    # Told when the second turn began, before the user spoke.
    (update,) = [
        e
        for e in session.received_events[told:]
        if e["type"] == "session.update" and "instructions" in e["session"]
    ]
    assert "The user is in the bedroom." in update["session"]["instructions"]


async def test_start_conversation_in_the_assistants_own_words(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
) -> None:
    """Without a message the assistant words the opening; media players announce it."""
    speaker = RecordingPlayer("Office speaker")
    await async_setup_satellites(hass, players=[speaker])
    emulator.assistant().add_turn(Turn(reply="Hi there! What can I do for you?"))

    await hass.services.async_call(
        DOMAIN,
        "start_conversation",
        {"entity_id": "media_player.office_speaker"},
        blocking=True,
    )

    ((media_id, options),) = speaker.played
    assert options.get("announce") is True
    assert media_id.startswith("media-source://tts/tts.itannix_voice")
    (message,) = parse_qs(urlsplit(media_id).query)["message"]
    assert message == "Hi there! What can I do for you?"
    # The opening came from a response of its own; nothing was said as the user.
    session = emulator.sessions[-1]
    creates = [e for e in session.received_events if e["type"] == "response.create"]
    assert creates
    assert creates[0]["response"]["instructions"]
    assert not [
        e for e in session.received_events if e["type"] == "conversation.item.create"
    ]


async def test_start_conversation_needs_a_target_that_can_speak(
    hass: HomeAssistant, config_entry: ConfigEntry
) -> None:
    """A target that cannot speak is refused with a clear error."""
    hass.states.async_set("light.kitchen", "off")
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "start_conversation",
            {"entity_id": "light.kitchen", "message": "Hello"},
            blocking=True,
        )
    assert err.value.translation_key == "cannot_start_conversation"


# -- the turn model, as a satellite's user notices it -------------------------------


async def test_heard_nothing_is_no_text_recognized(
    hass: HomeAssistant, emulator: Emulator, kitchen: VoiceSatellite
) -> None:
    """Silence: the pipeline says nothing was recognized, not that STT failed."""
    await kitchen.talk(silence(1.5))
    error = kitchen.event_data(PipelineEventType.ERROR)
    assert error["code"] == "stt-no-text-recognized"
    assert not [
        e
        for session in emulator.sessions
        for e in session.sent_events
        if e["type"] == "response.created"
    ]


async def test_speech_the_service_could_not_transcribe_is_still_answered(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """Transcription failed but the assistant understood: its reply is played."""
    reply = "Sure, the blinds are opening now, all of them in the bedroom."
    emulator.assistant().add_turn(
        Turn(
            transcript="open the blinds",
            reply=reply,
            transcription_error="Audio was unintelligible.",
        )
    )
    await kitchen.talk(utterance("Open the blinds.", tmp_path))

    (session,) = voice_sessions(emulator)
    assert any(
        e["type"] == "conversation.item.input_audio_transcription.failed"
        for e in session.sent_events
    )
    # The words are missing, not the turn: the pipeline goes on to the reply.
    assert kitchen.heard() == "…"
    assert kitchen.reply() == reply
    played = await fetch_tts(hass_client, kitchen)
    assert similarity(played, await reference_voice(reply)) > 0.6
    assert not [r for r in emulator.requests if "text-to-speech" in r[1]]


async def test_a_call_of_a_reply_another_agent_replaced_is_not_run(
    hass: HomeAssistant,
    emulator: Emulator,
    pipeline_id: str,
    tmp_path: Path,
) -> None:
    """Home Assistant's own agent answered: our reply's call runs nothing, ever.

    It is answered without running (no automation fires), its follow-up is never asked
    for, and the next turn, with our agent again, is answered once.
    """
    events = async_capture_events(hass, "itannix_function_call")
    pipelines = assist_pipeline.async_get_pipelines(hass)
    ours = next(p for p in pipelines if p.id == pipeline_id)
    await assist_pipeline.async_update_pipeline(
        hass, ours, conversation_engine="conversation.home_assistant"
    )
    (satellite,) = await async_setup_satellites(hass, "Hall satellite")
    emulator.assistant().add_turn(
        Turn(
            transcript="open the garage",
            function_calls=[FunctionCallSpec("open_garage", call_id="call_garage")],
            reply_after_tools="The garage is open.",
        )
    )
    emulator.assistant().add_turn(Turn(transcript="thanks", reply="You are welcome."))
    await satellite.talk(utterance("Open the garage.", tmp_path))
    assert satellite.heard() == "open the garage"
    (session,) = voice_sessions(emulator)
    await until(lambda: "call_garage" in session.function_outputs)
    assert "error" in json.loads(session.function_outputs["call_garage"])
    assert events == []

    await assist_pipeline.async_update_pipeline(
        hass,
        assist_pipeline.async_get_pipeline(hass, pipeline_id),
        conversation_engine=AGENT,
    )
    await satellite.talk(utterance("Thanks.", tmp_path))

    assert satellite.reply() == "You are welcome."
    assert events == []
    sessions = voice_sessions(emulator)
    assert not [
        e for s in sessions for e in s.received_events if e["type"] == "response.create"
    ]
    completed = [
        e["response"]["id"]
        for s in sessions
        for e in s.sent_events
        if e["type"] == "response.done" and e["response"]["status"] == "completed"
    ]
    # The call's response and the one answer: no follow-up of the call in between.
    assert len(completed) == 2, completed


@pytest.mark.parametrize(
    "transcript_first",
    [
        pytest.param(False, id="transcript-late"),
        pytest.param(True, id="transcript-first"),
    ],
)
async def test_a_failed_spoken_turn_speaks_its_error(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    transcript_first: bool,
) -> None:
    """The reply is cut off mid-sentence: the satellite hears the error, spoken.

    With the service's own timing the transcript comes after the reply, so the session
    drops while the turn still listens; with the transcript first (ideal transcription
    timing and a think time) it drops under the conversation stage. Either way the
    user hears why there is no answer, in the assistant's voice, and is not asked
    again (the reply had begun: repeating it could repeat what it did).
    """
    if transcript_first:
        emulator.behaviour.transcription_after_response = False
        emulator.behaviour.transcription_delay = 0.0
        emulator.behaviour.think_time = 0.5
    emulator.faults.drop_channel_mid_reply = True
    emulator.assistant().add_turn(
        Turn(transcript="tell me a story", reply="Once upon a time there was a light.")
    )
    emulator.assistant().add_turn(Turn(transcript="thanks", reply="You are welcome."))
    await kitchen.talk(utterance("Tell me a story.", tmp_path))

    run = [event.type for event in kitchen.events]
    assert PipelineEventType.ERROR not in run, kitchen.events
    assert kitchen.heard() == ("tell me a story" if transcript_first else "…")
    said = kitchen.reply()
    assert "Could not reach ItanniX" in said or "could not answer" in said, said
    # Not the abandoned reply's silence: the error in the assistant's REST voice.
    played = await fetch_tts(hass_client, kitchen)
    assert emulator.synthesized == [said]
    assert len(played) > 16_000  # more than half a second
    assert rms(played) > 300
    assert similarity(played, await reference_voice(said)) > 0.6
    ours = [r for r in caplog.records if r.name.startswith("custom_components.itannix")]
    failures = [
        r for r in ours if r.levelname == "WARNING" and "dropped" not in r.getMessage()
    ]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert not [r for r in ours if r.levelno >= logging.ERROR]
    # Not told again on a fresh session: the reply had begun.
    (dropped,) = voice_sessions(emulator)

    # The next turn is answered, on a fresh session.
    emulator.faults.drop_channel_mid_reply = False
    await kitchen.talk(utterance("Thanks.", tmp_path))
    assert kitchen.reply() == "You are welcome."
    assert len([s for s in voice_sessions(emulator) if s is not dropped]) == 1


async def test_barge_in_over_a_function_call_gives_one_reply(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """The user talks again while an automation still answers the assistant's call.

    The interrupted turn's call still gets its one output, but its follow-up reply
    never comes: the next turn answers once.
    """
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "triggers": [
                        {
                            "trigger": "event",
                            "event_type": "itannix_function_call",
                            "event_data": {"name": "open_garage"},
                        }
                    ],
                    "actions": [
                        {"delay": 2},
                        {
                            "action": "itannix.function_call_response",
                            "data": {
                                "call_id": "{{ trigger.event.data.call_id }}",
                                "response": {"open": True},
                            },
                        },
                    ],
                }
            ]
        },
    )
    emulator.assistant().add_turn(
        Turn(
            transcript="open the garage",
            function_calls=[FunctionCallSpec("open_garage", call_id="call_garage")],
            reply_after_tools="The garage is open.",
        )
    )
    emulator.assistant().add_turn(Turn(transcript="stop", reply="Okay."))
    first = hass.async_create_task(
        kitchen.talk(utterance("Open the garage.", tmp_path))
    )
    await until(lambda: bool(voice_sessions(emulator)))
    (session,) = voice_sessions(emulator)
    await until(
        lambda: any(e["type"] == "response.done" for e in session.sent_events),
        timeout=20,
    )
    await kitchen.talk(utterance("Stop.", tmp_path))
    await asyncio.gather(first, return_exceptions=True)
    assert kitchen.reply() == "Okay."
    # The call was answered once (when the automation finished), and nothing followed
    # it: the only replies are the call and "Okay.".
    await until(lambda: "call_garage" in session.function_outputs, timeout=10)
    await asyncio.sleep(0.5)
    outputs = [
        e
        for e in session.received_events
        if e["type"] == "conversation.item.create"
        and e["item"].get("type") == "function_call_output"
    ]
    assert len(outputs) == 1
    # Before 2026.11 a cancelled run ends its conversation: "Okay." may come from
    # the next conversation's session.
    texts = [
        e["response"]
        for each in voice_sessions(emulator)
        for e in each.sent_events
        if e["type"] == "response.done"
    ]
    assert [
        "".join(
            part.get("transcript") or part.get("text") or ""
            for item in response["output"]
            for part in item.get("content") or []
        )
        for response in texts
        if response["status"] == "completed"
    ] == ["", "Okay."]


async def test_barge_in_cuts_the_voice_still_playing(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """A wake while reply 1 still plays: reply 1 stops there, reply 2 plays once."""
    story = "Once upon a time, in a small house by the sea, there lived a lamp. " * 3
    emulator.assistant().add_turn(Turn(transcript="tell me a story", reply=story))
    emulator.assistant().add_turn(Turn(transcript="stop", reply="Okay, stopping."))
    await kitchen.talk(utterance("Tell me a story.", tmp_path))
    # The satellite plays reply 1 as it streams.
    first = hass.async_create_task(fetch_tts(hass_client, kitchen))
    (session,) = voice_sessions(emulator)
    await until(lambda: any(e["type"] == "response.done" for e in session.sent_events))
    await kitchen.talk(utterance("Stop.", tmp_path))
    second = await fetch_tts(hass_client, kitchen)
    async with asyncio.timeout(10):
        played_first = await first
    story_voice = await reference_voice(story)
    stop_voice = await reference_voice("Okay, stopping.")
    # Reply 1 was cut: far shorter than the story, and it did not go on into reply 2.
    assert len(played_first) < len(story_voice) * 0.8
    tail = played_first[-len(stop_voice) :]
    assert similarity(tail, stop_voice) < 0.5
    # Reply 2 played once, whole.
    assert similarity(second, stop_voice) > 0.6
    assert len(stop_voice) * 0.8 < len(second) < len(stop_voice) * 1.5


async def test_a_reply_heard_before_does_not_hold_its_live_voice(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """The same short reply twice: Home Assistant may play its cached recording.

    Then nobody asks for the live voice of the second reply; it must be let go as
    soon as the run is over, not held (with its session) for half a minute.
    """
    emulator.assistant().add_turn(Turn(transcript="thanks", reply="You are welcome."))
    emulator.assistant().add_turn(Turn(transcript="thanks", reply="You are welcome."))
    await kitchen.talk(utterance("Thanks.", tmp_path))
    await hass.async_block_till_done(wait_background_tasks=True)
    await kitchen.talk(utterance("Thanks.", tmp_path))
    assert kitchen.reply() == "You are welcome."
    sessions = config_entry.runtime_data.sessions
    (live,) = [
        live for key in list(sessions._live) if (live := sessions.get(key)) is not None
    ]
    # Unused within a few seconds: the idle countdown runs.
    await until(lambda: live.users == 0, timeout=6)


async def test_a_session_expired_between_spoken_turns_is_replaced_unnoticed(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    kitchen: VoiceSatellite,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The service ends the idle session: the next turn is answered, in context."""
    emulator.assistant().add_turn(Turn(transcript="my name is sam", reply="Hi Sam."))
    emulator.assistant().add_turn(
        Turn(transcript="what is my name", reply="You are Sam.")
    )
    await kitchen.talk(utterance("My name is Sam.", tmp_path))
    await hass.async_block_till_done(wait_background_tasks=True)
    (first,) = voice_sessions(emulator)
    await first.expire()

    await kitchen.talk(utterance("What is my name?", tmp_path))

    assert kitchen.heard() == "what is my name"
    assert kitchen.reply() == "You are Sam."
    second = [s for s in voice_sessions(emulator) if s is not first]
    assert len(second) == 1
    told = [
        (event["item"]["role"], event["item"]["content"][0]["text"])
        for event in second[0].received_events
        if event["type"] == "conversation.item.create"
        and event["item"].get("type") == "message"
    ]
    assert told == [("user", "my name is sam"), ("assistant", "Hi Sam.")]
    assert not [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("custom_components")
    ]


async def test_a_session_lost_while_listening_is_replaced_and_told_again(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """The session ends after the user spoke, before it answered: no answer is lost."""
    emulator.behaviour.think_time = 1.5
    for _ in range(2):  # each session's VAD takes the next scripted turn
        emulator.assistant().add_turn(
            Turn(transcript="what time is it", reply="It is noon.")
        )
    talking = hass.async_create_task(
        kitchen.talk(utterance("What time is it?", tmp_path))
    )
    await until(lambda: bool(voice_sessions(emulator)))
    (first,) = voice_sessions(emulator)
    await until(
        lambda: any(
            e["type"] == "input_audio_buffer.committed" for e in first.sent_events
        )
    )
    await first.expire()
    async with asyncio.timeout(30):
        await talking
    assert kitchen.heard() == "what time is it"
    assert kitchen.reply() == "It is noon."
    second = [s for s in voice_sessions(emulator) if s is not first]
    assert len(second) == 1
    assert second[0].inbound_voiced_ms > 300


async def test_a_failure_before_listening_leaves_no_session_behind(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    kitchen: VoiceSatellite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused while preparing the turn: reauthentication starts; the session idles."""
    from custom_components.itannix import voice
    from custom_components.itannix.realtime import AuthenticationError

    async def refused(*_args: object) -> None:
        raise AuthenticationError("Client secret does not match the enrolled secret")

    monkeypatch.setattr(voice, "async_prepare_session", refused)
    await kitchen.talk(utterance("Hello.", tmp_path))
    assert kitchen.event_data(PipelineEventType.ERROR)["code"] == "stt-stream-failed"
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    sessions = config_entry.runtime_data.sessions
    live = [sessions.get(key) for key in list(sessions._live)]
    assert live
    assert all(item is not None and item.users == 0 for item in live)
    # Counting down to closing: with a short idle time it does close.
    for item in live:
        assert item is not None
        assert item._cancel_idle is not None


@pytest.mark.skipif(
    not hasattr(stt, "PartialSpeechResult"),
    reason="partial STT results exist from Home Assistant 2026.11",
)
async def test_the_transcript_grows_as_the_service_transcribes(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    tmp_path: Path,
) -> None:
    """A consumer of partial results sees the words arrive, then the final text."""
    emulator.behaviour.transcription_deltas = True
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply="Done.")
    )
    entity = stt.async_get_speech_to_text_entity(hass, "stt.itannix_speech_to_text")
    assert entity is not None
    metadata = stt.SpeechMetadata(
        language="en",
        format=stt.AudioFormats.WAV,
        codec=stt.AudioCodecs.PCM,
        bit_rate=stt.AudioBitRates.BITRATE_16,
        sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
        channel=stt.AudioChannels.CHANNEL_MONO,
    )
    pcm = utterance("Turn on the kitchen light.", tmp_path)

    async def run() -> list[Any]:
        # In a task of its own, as a pipeline run is.
        return [
            result
            async for result in entity.internal_async_process_audio_stream_with_progress(
                metadata, microphone(pcm)
            )
        ]

    results = await hass.async_create_task(run())

    *partials, final = results
    assert final == stt.SpeechResult(
        "turn on the kitchen light", stt.SpeechResultState.SUCCESS
    )
    texts = [partial.text for partial in partials]
    assert all(isinstance(p, stt.PartialSpeechResult) for p in partials)
    # Word by word, each the whole transcript so far.
    assert len(texts) >= 2, texts
    assert texts == sorted(texts, key=len)
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert "turn on the kitchen light".startswith(texts[-1])


async def test_a_typed_turn_during_a_spoken_reply_leaves_it_whole(
    hass: HomeAssistant,
    emulator: Emulator,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """Typing into the conversation a satellite is answering keeps both replies apart.

    The typed turn is new input, as a barge-in is: answered on the conversation's
    session after the spoken reply's text, which stays whole.
    """
    story = "Once upon a time, " * 12
    emulator.assistant().add_turn(Turn(transcript="tell me a story", reply=story))
    emulator.assistant().add_turn(Turn(transcript="what time is it", reply="Noon."))
    spoken = hass.async_create_task(
        kitchen.talk(utterance("Tell me a story.", tmp_path))
    )

    def replying() -> bool:
        sessions = voice_sessions(emulator)
        return (
            bool(sessions)
            and any(
                e["type"] == "output_audio_buffer.started"
                for e in sessions[0].sent_events
            )
            and any(e.type is PipelineEventType.INTENT_START for e in kitchen.events)
        )

    await until(replying)
    conversation_id = kitchen.event_data(PipelineEventType.INTENT_START)[
        "conversation_id"
    ]
    # Home Assistant 2026.11 refuses it while the spoken turn still holds the chat log
    # (``ConversationBusyError``); otherwise it is answered, on its own.
    busy = getattr(conversation, "ConversationBusyError", ())
    try:
        typed = await conversation.async_converse(
            hass, "what time is it", conversation_id, Context(), agent_id=AGENT
        )
    except busy:
        pass
    else:
        assert typed.response.speech["plain"]["speech"] == "Noon."
    await spoken
    # The spoken reply's text is whole, nothing of the typed one in it.
    assert kitchen.reply() == story.strip()


async def test_a_voice_the_service_never_says_stopped_still_ends(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    config_entry: ConfigEntry,
    kitchen: VoiceSatellite,
    tmp_path: Path,
) -> None:
    """No output_audio_buffer.stopped: the satellite's reply still ends, whole.

    Then the session is free for the next turn.
    """
    emulator.behaviour.output_audio_buffer_stopped = False
    reply = "Sure. The kitchen light is on now, and the oven is warming up."
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply=reply)
    )
    emulator.assistant().add_turn(Turn(transcript="thanks", reply="You are welcome."))
    await kitchen.talk(utterance("Turn on the kitchen light.", tmp_path))
    async with asyncio.timeout(15):
        played = await fetch_tts(hass_client, kitchen)
    (session,) = voice_sessions(emulator)
    sent = [e["type"] for e in session.sent_events]
    assert "output_audio_buffer.started" in sent
    assert "output_audio_buffer.stopped" not in sent
    voice = await reference_voice(reply)
    assert similarity(played, voice) > 0.6
    assert len(played) > len(voice) * 0.9
    sessions = config_entry.runtime_data.sessions
    (live,) = [
        live for key in list(sessions._live) if (live := sessions.get(key)) is not None
    ]
    await until(lambda: live.users == 0, timeout=5)
    # The next turn is heard and answered on the same session.
    await kitchen.talk(utterance("Thanks.", tmp_path))
    assert kitchen.reply() == "You are welcome."
    async with asyncio.timeout(15):
        assert rms(await fetch_tts(hass_client, kitchen)) > 500
    assert voice_sessions(emulator) == [session]
