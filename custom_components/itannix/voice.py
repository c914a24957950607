"""The voice path: one realtime turn across Home Assistant's STT, conversation and TTS.

Home Assistant's Assist pipeline runs speech-to-text, the conversation agent and
text-to-speech as three stages. Here they are one realtime turn, owned by a
``VoiceTurn`` with one explicit state:

    LISTENING ─heard─▶ HEARD ─claim─▶ REPLYING ─replied─▶ REPLIED
                                         │                   │
                                         └─tts_stream─▶ SPEAKING ◀─tts_stream─┘
                                                         │ voice streamed
                                                         ▼
                                                        DONE

    Any state before SPEAKING ends ABANDONED when nobody takes the reply (no claim in
    time, another agent answered, the pipeline was cancelled), and REPLYING or REPLIED
    ends FAILED when the conversation stage fails: its error text is then synthesized
    by the REST voice instead of the reply's own voice playing. A session that drops
    while the turn listens, once the assistant began answering, still goes on to
    HEARD (``…`` when the transcript had not come): the conversation stage meets the
    drop in the reply and fails the turn, so its error is spoken.

The STT entity streams the satellite's audio into the conversation's session and yields
what the service heard (``async_listen_with_progress``: the transcript as it grows,
then the final one); the conversation entity claims the turn and streams its reply (``async_speak_reply``); the TTS entity asks the turn what to play
(``tts_stream``: the reply's own voice, or nothing, and then the text is synthesized).
The stages find their turn through a context variable: a pipeline runs all its stages in
one task (and the TTS task is created from it), so two satellites talking at once never
see each other's turn. This module is the only place that knows this.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
import json
from typing import Any, Final

from homeassistant.components import conversation
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import chat_session, llm
from homeassistant.helpers.event import async_call_later
from homeassistant.util.ulid import ulid_now

from .audio_format import wav_header
from .chat import (
    TurnStream,
    async_prepare_session,
    async_replay_history,
    async_stream_reply,
)
from .compat import stored_chat_log
from .const import CONF_MEDIA_PLAYER, DOMAIN, LOGGER
from .functions import CallContext
from .playback import async_live_media_id, async_play
from .prompt import TurnPrompt, async_spoken_turn_prompt
from .realtime import (
    AudioTurn,
    CannotConnectError,
    FunctionCall,
    ItanniXError,
    TranscriptionError,
)
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
# Once the pipeline run is over, how long the TTS stage may still take to ask for the
# voice (Home Assistant asks from a task of its own). When it never asks, it played
# something else: its cached recording of a reply with the same words.
AFTER_RUN_CLAIM_TIMEOUT = 2.0
# What a spoken turn keeps of the user's audio, to say it again to a fresh session
# when the first one drops before answering (seconds).
REPLAY_SECONDS = 30
# The transcript shown when the service answered speech it could not transcribe.
UNTRANSCRIBED: Final = "…"

_current_turn: ContextVar[VoiceTurn | None] = ContextVar(
    "itannix_voice_turn", default=None
)


class VoiceState(StrEnum):
    """Where a spoken turn is."""

    LISTENING = "listening"
    HEARD = "heard"
    REPLYING = "replying"
    REPLIED = "replied"
    SPEAKING = "speaking"
    DONE = "done"
    FAILED = "failed"
    ABANDONED = "abandoned"


_OVER: Final = frozenset({VoiceState.DONE, VoiceState.FAILED, VoiceState.ABANDONED})
# The reply's own voice can be played from these states.
_VOICED: Final = frozenset({VoiceState.REPLYING, VoiceState.REPLIED})


class VoiceTurn:
    """One spoken exchange, from the satellite's audio to the assistant's voice."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ItanniXConfigEntry,
        live: LiveSession,
        turn: AudioTurn,
    ) -> None:
        """Own a started audio turn (and the session it holds) until it is over."""
        self.hass = hass
        self.entry = entry
        self.live = live
        self.turn = turn
        self.state = VoiceState.LISTENING
        self.transcript: str | None = None
        self._calls: asyncio.Future[CallHandler] = hass.loop.create_future()
        self._deadline: CALLBACK_TYPE | None = None
        # A session that closes (idle, unload, dropped) ends the turn with it.
        self._unlisten = live.session.connection.add_close_listener(
            lambda _reason: self._closed()
        )
        live.call_handler = self.handle_call

    @property
    def finished(self) -> bool:
        """Whether Home Assistant is done with this turn."""
        return self.state in _OVER

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

    # transitions

    def heard(self, transcript: str) -> None:
        """LISTENING → HEARD: the conversation stage should claim the reply at once."""
        if self.state is not VoiceState.LISTENING:
            return
        self.transcript = transcript
        self.state = VoiceState.HEARD
        self._set_deadline(CLAIM_TIMEOUT, self.abandon)

    def claim(self) -> bool:
        """HEARD → REPLYING: the conversation stage takes the reply."""
        if self.state is not VoiceState.HEARD:
            return False
        self.state = VoiceState.REPLYING
        self._cancel_deadline()
        return True

    def replied(self) -> None:
        """REPLYING → REPLIED: the text is complete; the voice waits for the TTS stage."""
        if self.state is VoiceState.REPLYING:
            self.state = VoiceState.REPLIED
            self._set_deadline(AUDIO_CLAIM_TIMEOUT, self.finish)

    @callback
    def run_ended(self, _task: object = None) -> None:
        """The pipeline run is over: a voice nobody asked for yet soon never will be."""
        if self.state in (VoiceState.HEARD, VoiceState.REPLYING, VoiceState.REPLIED):
            self._set_deadline(AFTER_RUN_CLAIM_TIMEOUT, self._never_asked)

    @callback
    def _never_asked(self) -> None:
        """Home Assistant played its cached recording of the same words instead.

        With a media player chosen, what it played on the satellite is the silence
        cached with those words; the voice goes to the player all the same.
        """
        if not self.play_on_player():
            self.abandon()

    @callback
    def fail(self, err: BaseException) -> None:
        """The conversation stage failed: stop the reply; its error is spoken instead."""
        if self.finished:
            return
        LOGGER.debug("Voice turn failed in conversation %s: %s", self.live.key, err)
        self._stop_reply()
        self._end(VoiceState.FAILED)

    @callback
    def abandon(self) -> None:
        """Nobody takes the reply: stop it, and let no function call wait for it."""
        if self.finished:
            return
        LOGGER.debug("Voice turn abandoned in conversation %s", self.live.key)
        self._stop_reply()
        self._end(VoiceState.ABANDONED)

    @callback
    def finish(self) -> None:
        """The voice was played (or its wait ran out)."""
        if not self.finished:
            self._end(VoiceState.DONE)

    def _stop_reply(self) -> None:
        # Audio still queued, or heard but not yet committed, would otherwise be taken
        # as the start of the next utterance.
        self.hass.async_create_background_task(
            self._async_stop_reply(), f"{DOMAIN} cancel unused reply"
        )

    async def _async_stop_reply(self) -> None:
        await self.live.session.cancel_turn(self.turn, forget_input=True)

    def _closed(self) -> None:
        """The session closed (idle, unload, dropped): the turn ends with it.

        Unless the assistant had begun answering while the turn still listens: the STT
        stage then hears of the drop and passes the turn on to HEARD, so that the
        conversation stage fails it and its error is spoken.
        """
        if self.state is VoiceState.LISTENING and self.turn.responses:
            return
        if not self.finished:
            self._end(
                VoiceState.DONE
                if self.state is VoiceState.SPEAKING
                else VoiceState.ABANDONED
            )

    def _end(self, state: VoiceState) -> None:
        """Enter a final state: release the audio, the calls and the session."""
        self.state = state
        self._unlisten()
        self._cancel_deadline()
        self.attach_calls(_unattended_call)
        self.turn.end_audio()
        if self.live.call_handler == self.handle_call:
            self.live.call_handler = None
        self.entry.runtime_data.sessions.turn_finished(self.live)

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

    def tts_stream(self, *, wav: bool = True) -> AsyncGenerator[bytes] | None:
        """What the TTS stage plays: the reply's own voice, or None (synthesize).

        A 16 kHz mono WAV stream, or its bare 16-bit samples without ``wav``.

        Not claimed by the conversation stage means another agent answered: our reply
        is not wanted. A failed or abandoned turn's text (an error) is not in its
        voice: it is synthesized.
        """
        if self.state is VoiceState.HEARD:
            self.abandon()
        if self.state not in _VOICED:
            return None
        self.state = VoiceState.SPEAKING
        self._cancel_deadline()
        return self._audio_stream(wav)

    @callback
    def play_on_player(self) -> bool:
        """Play the reply's voice on the options' media player, if one is chosen.

        SPEAKING from then on, as when the TTS stage takes it; False (and nothing
        changed) when no player is chosen or there is no voice to play.
        """
        if not (player := self.entry.options.get(CONF_MEDIA_PLAYER)):
            return False
        if (pcm := self.tts_stream(wav=False)) is None:
            return False
        media_id = async_live_media_id(self.hass, pcm, SAMPLE_RATE, self.finish)
        self.entry.async_create_background_task(
            self.hass, async_play(self.hass, player, media_id), f"{DOMAIN} play reply"
        )
        return True

    async def _audio_stream(self, wav: bool) -> AsyncGenerator[bytes]:
        """The assistant's voice for this turn: 16 kHz mono 16-bit samples."""
        try:
            if wav:
                yield wav_header(SAMPLE_RATE, 1)
            async for chunk in self.turn.reply_audio():
                yield chunk
        except ItanniXError as err:
            # The conversation stage reported the failure already, if it was one.
            LOGGER.debug("The assistant's voice was cut off: %s", err)
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
        or voice.transcript != text
        or not voice.claim()
    ):
        return None
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

    await async_stream_reply(hass, chat_log, agent_id, produce)
    voice.replied()


# listening


class _Microphone:
    """The satellite's audio into the current turn, kept (bounded) for a retry."""

    def __init__(self) -> None:
        self._kept = bytearray()
        self.complete = True
        self.turn: AudioTurn | None = None

    def feed(self, chunk: bytes) -> None:
        if len(self._kept) + len(chunk) <= REPLAY_SECONDS * SAMPLE_RATE * 2:
            self._kept += chunk
        else:
            self.complete = False
        if self.turn is not None:
            self.turn.feed_audio(chunk)

    def switch(self, turn: AudioTurn) -> None:
        """Say everything again to a new turn (a fresh session)."""
        self.turn = turn
        turn.feed_audio(bytes(self._kept))


async def _async_start(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    key: str,
    prompt: TurnPrompt,
    chat_log: conversation.ChatLog | None,
) -> VoiceTurn:
    """Open (or reuse) the conversation's session and start listening on it."""
    sessions = entry.runtime_data.sessions
    live = await sessions.async_get(key, audio=True)
    try:
        # The service answers as soon as speech ends: the tools must be there before.
        await async_prepare_session(live, prompt)
        # A fresh session gets the conversation so far (e.g. the opening line of an
        # automation's start_conversation), once.
        await async_replay_history(live, list(chat_log.content) if chat_log else [])
        # A new turn on the same conversation interrupts a reply still playing.
        turn = await live.session.start_audio_turn()
    except BaseException:
        # No voice turn holds the session yet: hand it back so it counts down.
        sessions.turn_finished(live)
        raise
    return VoiceTurn(hass, entry, live, turn)


@dataclass(frozen=True, slots=True)
class Heard:
    """What the service understood, once it is final (None: nothing understood)."""

    text: str | None


async def _async_hear(
    voice: VoiceTurn, feeder: asyncio.Task[None]
) -> AsyncGenerator[str | Heard]:
    """Yield the transcript so far as it grows, then what the service heard.

    The transcript may follow the reply. Once the satellite stops sending, the service
    still needs to hear the trailing silence that ends the utterance: it is given
    ``SPEECH_TIMEOUT`` more.
    """
    turn = voice.turn
    heard = asyncio.ensure_future(turn.transcript())
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    shown = ""
    try:
        while not heard.done():
            if deadline is None and feeder.done():
                deadline = loop.time() + SPEECH_TIMEOUT
            changed = asyncio.ensure_future(turn.transcript_changed.wait())
            waiting = {heard, changed} if feeder.done() else {heard, changed, feeder}
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
            if not done:
                yield Heard(None)
                return
            turn.transcript_changed.clear()
            if not heard.done() and turn.partial_transcript not in ("", shown):
                shown = turn.partial_transcript
                yield shown
        try:
            yield Heard(heard.result())
        except TranscriptionError as err:
            LOGGER.debug("The service could not transcribe the speech: %s", err)
            yield Heard(None)
    finally:
        heard.cancel()


async def async_listen_with_progress(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    language: str,
    stream: AsyncIterable[bytes],
) -> AsyncGenerator[str | Heard]:
    """Stream the user's speech into the conversation's session.

    Yields the transcript so far while the service transcribes, then one ``Heard``:
    the transcript, empty when the service heard nothing. Iterate it in the pipeline's
    task: the turn stays current there for the conversation and TTS stages. A session
    that drops before answering is replaced once, and told again what the user said;
    one that drops after the assistant began answering is not (``…`` is heard, unless
    the transcript came): the conversation stage fails the turn, its error spoken.
    """
    key, prompt, chat_log = await _async_turn_context(hass, entry, language)
    microphone = _Microphone()
    voice = await _async_start(hass, entry, key, prompt, chat_log)
    microphone.switch(voice.turn)
    _current_turn.set(voice)
    run = asyncio.current_task()

    async def feed() -> None:
        async for chunk in stream:
            microphone.feed(chunk)

    feeder = hass.async_create_task(feed(), f"{DOMAIN} microphone", eager_start=True)
    transcript: str | None = None
    try:
        for attempt in range(2):
            try:
                async with aclosing(_async_hear(voice, feeder)) as hearing:
                    async for result in hearing:
                        if not isinstance(result, Heard):
                            yield result
                        else:
                            transcript = result.text
                break
            except CannotConnectError as err:
                if voice.turn.responses:
                    # Dropped while the assistant answered: asking again could repeat
                    # what the reply did. The turn goes on; the conversation stage
                    # fails it with this error, which is what the satellite says.
                    LOGGER.debug("Session lost mid-reply (%s): %s", key, err)
                    break
                if attempt or not microphone.complete:
                    raise
                # Dropped before it answered: say it all again on a fresh session.
                LOGGER.debug("Listening again on a fresh session (%s)", key)
                voice.abandon()
                voice = await _async_start(hass, entry, key, prompt, chat_log)
                microphone.switch(voice.turn)
                _current_turn.set(voice)
    except BaseException:
        voice.abandon()
        raise
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    yield Heard(_heard(voice, transcript, run))


async def _async_turn_context(
    hass: HomeAssistant, entry: ItanniXConfigEntry, language: str
) -> tuple[str, TurnPrompt, conversation.ChatLog | None]:
    """The conversation's key, this turn's prompt and the chat log so far."""
    session = chat_session.current_session.get()
    key = session.conversation_id if session is not None else ulid_now()
    chat_log = stored_chat_log(hass, key)
    llm_context = llm.LLMContext(
        platform=DOMAIN,
        context=None,
        language=language,
        assistant=conversation.DOMAIN,
        device_id=None,
    )
    prompt = await async_spoken_turn_prompt(
        hass,
        entry,
        llm_context,
        getattr(chat_log, "extra_system_prompt", None),
    )
    return key, prompt, chat_log


def _heard(
    voice: VoiceTurn, transcript: str | None, run: asyncio.Task[Any] | None
) -> str:
    """End listening: the turn goes on to the conversation stage, or is abandoned."""
    if not transcript and voice.turn.responses:
        # The assistant answered what it heard; only the transcript is missing.
        transcript = UNTRANSCRIBED
    if not transcript:
        voice.abandon()
        return ""
    voice.heard(transcript)
    if run is not None:
        # The stages run in this task: its end is the end of the pipeline run.
        run.add_done_callback(voice.run_ended)
    return transcript
