"""The voice path: one realtime turn across Home Assistant's STT, conversation and TTS.

Home Assistant's Assist pipeline runs speech-to-text, the conversation agent and
text-to-speech as three stages. Here they are one realtime turn: the STT entity streams the
satellite's audio into the conversation's session and returns what the service heard; the
conversation entity then streams that turn's reply; the TTS entity plays that turn's own
recorded voice. The stages find their turn through a context variable: a pipeline runs all
its stages in one task (and the TTS task is created from it), so two satellites talking at
once never see each other's turn. This module is the only place that knows this, so the
voice path can move to Home Assistant's audio-to-audio hook once that ships.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
import contextlib
from contextvars import ContextVar
import json
import struct
from typing import Any

from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import chat_session, llm
from homeassistant.helpers.event import async_call_later
from homeassistant.util.ulid import ulid_now

from .chat import (
    TurnStream,
    async_prepare_session,
    async_replay_history,
    async_stream_reply,
)
from .compat import chat_log_history
from .const import CONF_MEDIA_PLAYER, DOMAIN, LOGGER
from .functions import CallContext
from .realtime import AudioTurn, FunctionCall, ItanniXError
from .runtime import ItanniXConfigEntry
from .sessions import CallHandler, LiveSession

SAMPLE_RATE = 16000
# How long the conversation stage has to take the reply before it is cancelled (another
# agent answers this pipeline, or the pipeline was abandoned).
CLAIM_TIMEOUT = 5.0
# After the satellite's audio ends, how long the service may take to notice the end of
# speech and transcribe it (the paced microphone keeps sending silence meanwhile).
SPEECH_TIMEOUT = 8.0
# How long a finished reply's voice waits for the TTS stage before it is dropped.
AUDIO_CLAIM_TIMEOUT = 30.0

_current_turn: ContextVar[VoiceTurn | None] = ContextVar(
    "itannix_voice_turn", default=None
)


def wav_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """A WAV header for a 16-bit mono stream of unknown length."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def wav_file(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete 16-bit mono WAV file."""
    header = bytearray(wav_header(sample_rate))
    struct.pack_into("<I", header, 4, 36 + len(pcm))
    struct.pack_into("<I", header, 40, len(pcm))
    return bytes(header) + pcm


class VoiceTurn:
    """One spoken exchange, from the satellite's audio to the assistant's voice."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ItanniXConfigEntry,
        live: LiveSession,
        turn: AudioTurn,
    ) -> None:
        """Wrap a started audio turn."""
        self.hass = hass
        self.entry = entry
        self.live = live
        self.turn = turn
        self.transcript: str | None = None
        self.claimed = False
        self.audio_claimed = False
        self._calls: asyncio.Future[CallHandler] = hass.loop.create_future()
        self._deadline: CALLBACK_TYPE | None = None
        self._finished = False
        # A session that closes (idle, unload, dropped) ends the turn with it.
        self._unlisten = live.session.connection.add_close_listener(
            lambda _reason: self.finish()
        )

    # function calls

    async def handle_call(self, call: FunctionCall) -> str:
        """Answer a call made while the reply is produced.

        It may precede the conversation stage: the service answers as soon as the
        user stops speaking.
        """
        handler = await asyncio.shield(self._calls)
        return await handler(call)

    def attach_calls(self, handler: CallHandler) -> None:
        """The conversation stage runs this turn's calls from now on."""
        if not self._calls.done():
            self._calls.set_result(handler)

    # stages

    def claim(self) -> None:
        """The conversation stage takes the reply."""
        self.claimed = True
        self._cancel_deadline()

    def reply_done(self) -> None:
        """The reply text is complete: its voice now waits for the TTS stage."""
        if not self.audio_claimed:
            self._set_deadline(AUDIO_CLAIM_TIMEOUT, self.finish)

    def claim_audio(self) -> None:
        """The TTS stage takes the reply's voice."""
        self.audio_claimed = True
        self._cancel_deadline()

    def expect_claim(self) -> None:
        """The transcript is out: the conversation stage should follow at once."""
        self._set_deadline(CLAIM_TIMEOUT, self.abandon)

    @property
    def finished(self) -> bool:
        """Whether Home Assistant is done with this turn."""
        return self._finished

    @callback
    def abandon(self) -> None:
        """Nobody takes the reply: stop it, and let no function call wait for it."""
        if self._finished:
            return
        LOGGER.debug("Voice turn abandoned in conversation %s", self.live.key)
        # Audio still queued, or heard but not yet committed, would otherwise be
        # taken as the start of the next utterance.
        self.live.session.connection.microphone.clear()
        self.hass.async_create_background_task(
            self._async_cancel(), f"{DOMAIN} cancel unused reply"
        )
        self.attach_calls(_unattended_call)
        self.finish()

    @callback
    def finish(self) -> None:
        """The turn is over for Home Assistant: release its audio, start the idle clock."""
        if self._finished:
            return
        self._finished = True
        self._unlisten()
        self._cancel_deadline()
        self.attach_calls(_unattended_call)
        self.turn.end_audio()
        if self.live.call_handler == self.handle_call:
            self.live.call_handler = None
        self.entry.runtime_data.sessions.turn_finished(self.live)

    async def _async_cancel(self) -> None:
        await self.turn.cancel()
        with contextlib.suppress(ItanniXError):
            await self.live.session.connection.send(
                {"type": "input_audio_buffer.clear"}
            )

    def _set_deadline(self, delay: float, action: Callable[[], None]) -> None:
        self._cancel_deadline()

        @callback
        def _expired(_now: Any) -> None:
            self._deadline = None
            action()

        self._deadline = async_call_later(self.hass, delay, _expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline()
            self._deadline = None

    # audio out

    async def audio_stream(self) -> AsyncGenerator[bytes]:
        """The assistant's voice for this turn as a 16 kHz mono WAV stream."""
        try:
            yield wav_header()
            async for chunk in self.turn.reply_audio():
                yield chunk
        except ItanniXError as err:
            LOGGER.warning("The assistant's voice was cut off: %s", err)
        finally:
            self.finish()


async def _unattended_call(call: FunctionCall) -> str:
    return json.dumps(
        {"error": f"Function {call.name} was not handled: nobody took the reply"}
    )


def current_turn() -> VoiceTurn | None:
    """The voice turn of the pipeline running in this task, if any."""
    return _current_turn.get()


def claim_turn(entry: ItanniXConfigEntry, text: str) -> VoiceTurn | None:
    """The spoken turn whose transcript the conversation stage was given, if any."""
    voice = _current_turn.get()
    if (
        voice is None
        or voice.entry is not entry
        or voice.claimed
        or voice.finished
        or voice.transcript != text
    ):
        return None
    voice.claim()
    return voice


async def async_speak_reply(
    hass: HomeAssistant,
    voice: VoiceTurn,
    chat_log: conversation.ChatLog,
    agent_id: str,
    user_input: conversation.ConversationInput,
) -> None:
    """Stream the spoken turn's reply transcript (and its tool calls) into the log."""
    dispatcher = voice.entry.runtime_data.functions

    async def produce(stream: TurnStream) -> None:
        # Calls act on the satellite the user talks to; the assistant's own voice
        # there is what "stop_audio" cuts.
        voice.attach_calls(
            dispatcher.handler(
                CallContext(
                    conversation_id=voice.live.key,
                    device_id=user_input.device_id,
                    satellite_entity_id=user_input.satellite_id,
                    llm_tools=stream.llm_tools,
                    run_llm_tool=stream.call_tool,
                    media_player_entity_id=voice.entry.options.get(CONF_MEDIA_PLAYER),
                    stop_reply=voice.turn.cancel,
                    context=user_input.context,
                )
            )
        )
        async for delta in voice.turn.reply_deltas():
            stream.text(delta)

    try:
        await async_stream_reply(hass, chat_log, agent_id, produce)
    finally:
        voice.reply_done()


async def _llm_api(
    hass: HomeAssistant, entry: ItanniXConfigEntry, language: str
) -> tuple[llm.APIInstance | None, str]:
    """Return the selected LLM API and its prompt, before the user speaks.

    The service answers as soon as speech ends, so the tools must be installed by then.
    """
    extra = entry.options.get(CONF_PROMPT) or ""
    if not (api_id := entry.options.get(CONF_LLM_HASS_API)):
        return None, extra
    try:
        api = await llm.async_get_api(
            hass,
            api_id,
            llm.LLMContext(
                platform=DOMAIN,
                context=None,
                language=language,
                assistant="conversation",
                device_id=None,
            ),
        )
    except HomeAssistantError as err:
        LOGGER.warning("LLM API %s is not available: %s", api_id, err)
        return None, extra
    return api, "\n".join(part for part in (extra, api.api_prompt) if part)


async def async_listen(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    language: str,
    stream: AsyncIterable[bytes],
) -> str | None:
    """Stream the user's speech into the conversation's session; return the transcript.

    None when the service heard no speech. The turn stays current for the pipeline's
    conversation and TTS stages.
    """
    sessions = entry.runtime_data.sessions
    session = chat_session.current_session.get()
    key = session.conversation_id if session is not None else ulid_now()
    live = await sessions.async_get(key, audio=True)
    try:
        api, prompt = await _llm_api(hass, entry, language)
        await async_prepare_session(live, api, prompt)
        if session is not None:
            # E.g. the opening line of an automation's start_conversation is in the log.
            await async_replay_history(live, chat_log_history(hass, session))
        # A new turn on the same conversation interrupts a reply still playing
        # (barge-in).
        turn = await live.session.start_audio_turn()
    except BaseException:
        # No voice turn holds the session yet: hand it back so it counts down.
        sessions.turn_finished(live)
        raise
    voice = VoiceTurn(hass, entry, live, turn)
    live.call_handler = voice.handle_call
    _current_turn.set(voice)

    async def feed() -> None:
        async for chunk in stream:
            turn.feed_audio(chunk)

    feeder = hass.async_create_task(feed(), f"{DOMAIN} microphone", eager_start=True)
    heard = asyncio.ensure_future(turn.transcript())
    try:
        await asyncio.wait((heard, feeder), return_when=asyncio.FIRST_COMPLETED)
        if not heard.done():
            # The satellite stopped sending; the service still needs to hear the
            # trailing silence that ends the utterance.
            await asyncio.wait((heard,), timeout=SPEECH_TIMEOUT)
        transcript = heard.result() if heard.done() else None
    except BaseException:
        voice.abandon()
        raise
    finally:
        for task in (heard, feeder):
            task.cancel()
        await asyncio.gather(heard, feeder, return_exceptions=True)
    if not transcript:
        voice.abandon()
        return None
    voice.transcript = transcript
    voice.expect_claim()
    return transcript
