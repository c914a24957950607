"""Turns: what one user input produces, as the caller sees it.

A turn owns the responses it asked for, or that the service created for its input (its
server VAD answers speech by itself). The session routes each response's events to the
turn that owns it (``routing.py``); a turn never sees another turn's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from .errors import ItanniXError
from .events import (
    OUTPUT_AUDIO_CLEARED,
    OUTPUT_AUDIO_STARTED,
    OUTPUT_AUDIO_STOPPED,
    Usage,
)
from .voice_end import VoiceEnd

if TYPE_CHECKING:
    from .audio import AudioSubscription, MicrophoneTrack, SpeakerSink

_END: Final = object()
# After a spoken turn's reply is done, how long a transcript may still take: the
# service transcribes on a separate model, and documents that the transcript may come
# after the response.
TRANSCRIPT_GRACE: Final = 3.0


class TranscriptionError(ItanniXError):
    """The service could not transcribe what the user said (it may still answer)."""


type Canceller = Callable[["Turn"], Awaitable[None]]


class Turn:
    """The responses one input produced: their text, usage, and how the turn ended."""

    def __init__(self, modalities: tuple[str, ...] | None, cancel: Canceller) -> None:
        """Initialize; the session creates turns."""
        self.modalities = modalities
        self._cancel = cancel
        self.responses: list[str] = []
        self.usage = Usage()
        self.cancelled = False
        # A response.create of ours (or the service's VAD) should start a response
        # this turn owns.
        self.awaiting_response = False
        self._requested_at = 0
        # Whether a refused response.create was already sent again.
        self.asked_again = False
        self._parts: list[str] = []
        self._item_id: str | None = None
        self._deltas: asyncio.Queue[Any] = asyncio.Queue()
        self._done = asyncio.Event()
        self._error: ItanniXError | None = None

    @property
    def done(self) -> bool:
        """Whether the turn is over (answered, cancelled or failed)."""
        return self._done.is_set()

    @property
    def error(self) -> ItanniXError | None:
        """Why the turn failed, if it did."""
        return self._error

    @property
    def produced(self) -> bool:
        """Whether the reply has any text yet."""
        return bool(self._parts)

    def owns(self, response_id: str) -> bool:
        """Whether ``response_id`` is one of this turn's responses."""
        return response_id in self.responses

    def on_response_created(self, response_id: str) -> None:
        """A response of this turn started (from the session)."""
        self.awaiting_response = False
        self.responses.append(response_id)

    def await_response(self) -> None:
        """A ``response.create`` for this turn is on its way."""
        self.awaiting_response = True
        self._requested_at = len(self.responses)

    def disown_since_request(self) -> list[str]:
        """The service refused our last request: responses since were not for it."""
        others = self.responses[self._requested_at :]
        del self.responses[self._requested_at :]
        self.awaiting_response = True
        return others

    def add_delta(self, delta: str, item_id: str | None = None) -> None:
        """Add reply text; separate the text of successive items with a space."""
        if self.done or not delta:
            return
        if (
            item_id != self._item_id
            and self._parts
            and not self._parts[-1][-1:].isspace()
            and not delta[:1].isspace()
        ):
            delta = " " + delta
        self._item_id = item_id
        self._parts.append(delta)
        self._deltas.put_nowait(delta)

    def finish(self, error: ItanniXError | None = None) -> None:
        """End the turn (with the error that ended it, if any)."""
        if self.done:
            return
        self._error = error
        self._done.set()
        self._deltas.put_nowait(_END)

    async def wait(self) -> None:
        """Wait until the turn is over (without raising)."""
        await self._done.wait()

    async def cancel(self) -> None:
        """Cut the turn short: stop the reply (and its voice)."""
        await self._cancel(self)

    async def _iter_deltas(self) -> AsyncIterator[str]:
        while True:
            item = await self._deltas.get()
            if item is _END:
                self._deltas.put_nowait(_END)
                if self._error is not None:
                    raise self._error
                return
            yield item

    async def _final_text(self) -> str:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return "".join(self._parts)


class Reply(Turn):
    """The answer to a typed message.

    ``async for delta in reply`` streams the text; ``await reply.text()`` returns it all.
    Both raise the ItanniXError that ended the turn, if one did.
    """

    def __aiter__(self) -> AsyncIterator[str]:
        """Stream the reply text as it arrives."""
        return self._iter_deltas()

    def deltas(self) -> AsyncIterator[str]:
        """Stream the reply text as it arrives."""
        return self._iter_deltas()

    async def text(self) -> str:
        """Return the full reply text once the turn is over."""
        return await self._final_text()


class AudioTurn(Turn):
    """A spoken exchange: the user's audio in, the assistant's voice out.

    Feed the user's 16 kHz mono PCM with ``feed_audio()``; the service's VAD detects the
    end of speech and answers. ``reply_audio()`` yields the assistant's voice (16 kHz
    mono s16 chunks) for this turn only; it ends when the service says the voice stopped
    playing (not when the response is done: generation outpaces playback), or failing
    that once the voice has gone quiet, and at the latest after a bound (``voice_end.py``).
    """

    def __init__(
        self,
        cancel: Canceller,
        *,
        microphone: MicrophoneTrack,
        speaker: SpeakerSink,
        drain: float,
        transcribes: bool,
    ) -> None:
        """Initialize; use ``RealtimeSession.start_audio_turn()``."""
        super().__init__(None, cancel)
        self.awaiting_response = True  # the service's VAD answers by itself
        self._microphone = microphone
        self._speaker = speaker
        self._transcribes = transcribes
        self.speech_started = asyncio.Event()
        self.speech_stopped = asyncio.Event()
        # The conversation items of what the user said in this turn.
        self.input_items: set[str] = set()
        self.partial_transcript = ""
        # Set whenever the transcript grows or becomes final; cleared by the reader.
        self.transcript_changed = asyncio.Event()
        self._transcript: str | None = None
        self._transcription_error: TranscriptionError | None = None
        self._heard = asyncio.Event()
        self._audio: AudioSubscription | None = None
        self._audio_ready = asyncio.Event()
        self._voice: VoiceEnd | None = None
        self._drain = drain
        self._released = False

    # the user's side

    def feed_audio(self, pcm: bytes) -> None:
        """Send the user's audio (16 kHz mono s16 PCM)."""
        self._microphone.feed(pcm)

    def on_speech(self, started: bool, item_id: str | None) -> None:
        """The service's VAD heard speech start or stop (from the session)."""
        if item_id:
            self.input_items.add(item_id)
        (self.speech_started if started else self.speech_stopped).set()

    def on_transcript_delta(self, delta: str) -> None:
        """Part of what the user said (from the session)."""
        if self._transcript is None and delta:
            self.partial_transcript += delta
            self.transcript_changed.set()

    def set_transcript(self, transcript: str) -> None:
        """What the service understood the user said (from the session)."""
        if self._transcript is None:
            self._transcript = transcript
            self.partial_transcript = transcript
            self.transcript_changed.set()
        self._heard.set()

    def transcription_failed(self, error: TranscriptionError) -> None:
        """The service could not transcribe the input (from the session)."""
        if self._transcript is None:
            self._transcription_error = error
        self._heard.set()

    @property
    def has_transcript(self) -> bool:
        """Whether the transcript is known."""
        return self._transcript is not None

    async def transcript(self, grace: float = TRANSCRIPT_GRACE) -> str | None:
        """Return what the service understood the user said, whenever it comes.

        It may come after the reply is done; once the turn is over, it is waited for
        ``grace`` seconds more. None when none came (or input transcription is off);
        ``TranscriptionError`` when the service reports it could not transcribe.
        """
        heard = asyncio.ensure_future(self._heard.wait())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait((heard, done), return_when=asyncio.FIRST_COMPLETED)
            if not heard.done() and self._transcribes and not self._closed_error():
                await asyncio.wait((heard,), timeout=grace)
        finally:
            heard.cancel()
            done.cancel()
        if self._transcript is not None:
            return self._transcript
        if self._transcription_error is not None:
            raise self._transcription_error
        if (closed := self._closed_error()) is not None:
            raise closed
        return None

    def _closed_error(self) -> ItanniXError | None:
        """The error that ended the turn with its session, if that is how it ended."""
        return self._error if self._released else None

    # the assistant's side

    def reply_deltas(self) -> AsyncIterator[str]:
        """Stream the transcript of the assistant's spoken reply."""
        return self._iter_deltas()

    async def reply_text(self) -> str:
        """Return the transcript of the assistant's reply once the turn is over."""
        return await self._final_text()

    async def reply_audio(self) -> AsyncIterator[bytes]:
        """Yield the assistant's voice for this turn as 16 kHz mono s16 chunks."""
        ready = asyncio.ensure_future(self._audio_ready.wait())
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait((ready, done), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            done.cancel()
        if self._audio is not None:
            async for chunk in self._audio:
                yield chunk
        if self._error is not None:
            raise self._error

    @property
    def audio_open(self) -> bool:
        """Whether the reply's voice may still come (not ended)."""
        return self._audio is not None and not self._audio.closed

    def on_response_created(self, response_id: str) -> None:
        """A response of this turn started: collect its voice (from the session)."""
        super().on_response_created(response_id)
        if self._voice is not None:
            self._voice.responses_resumed()
        if self._audio is None and not self.done:
            self._audio = self._speaker.subscribe()
            self._voice = VoiceEnd(self._audio, drain=self._drain, end=self.end_audio)
            self._audio_ready.set()

    def on_output_audio(self, etype: str, response_id: str) -> None:
        """The service's output audio buffer, for one of this turn's responses."""
        if self._voice is None:
            return
        if etype in OUTPUT_AUDIO_STARTED:
            self._voice.started(response_id)
        elif etype in OUTPUT_AUDIO_STOPPED:
            self._voice.stopped(response_id)
        elif etype in OUTPUT_AUDIO_CLEARED:
            self._voice.cleared()

    def on_responses_done(self) -> None:
        """The last response of the turn is done (from the session)."""
        if self._voice is not None:
            self._voice.responses_done(sum(map(len, self._parts)))

    def end_audio(self) -> None:
        """End ``reply_audio()`` after what is already queued."""
        if self._voice is not None:
            self._voice.cancel()
        if self._audio is not None:
            self._audio.close()
        self._audio_ready.set()

    def finish(self, error: ItanniXError | None = None) -> None:
        """End the turn; its voice ends now only if it failed or was cancelled."""
        super().finish(error)
        if error is not None or self.cancelled:
            self.end_audio()
        self._audio_ready.set()
        if not self._transcribes or self.cancelled:
            self._heard.set()

    def release(self, error: ItanniXError | None) -> None:
        """The session closed: end everything the turn holds."""
        self._released = True
        self.finish(error)
        self.end_audio()
        self._heard.set()
