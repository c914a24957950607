"""High-level realtime conversation: typed turns, spoken turns and function calls."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
import contextlib
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any, Final, Self

from .connection import RealtimeConnection
from .errors import CannotConnectError, ItanniXError, ProtocolError, ServerError
from .events import (
    CONVERSATION_ITEM_CREATE,
    OUTPUT_AUDIO_BUFFER_CLEAR,
    OUTPUT_AUDIO_CLEARED,
    OUTPUT_AUDIO_STARTED,
    OUTPUT_AUDIO_STOPPED,
    RESPONSE_CANCEL,
    RESPONSE_CREATE,
    RESPONSE_STATUS_CANCELLED,
    RESPONSE_STATUS_FAILED,
    Event,
    FunctionCall,
    FunctionCallTracker,
    InputTranscript,
    ResponseCreated,
    ResponseDone,
    ServerErrorEvent,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDelta,
    Usage,
    parse_event,
    response_id_of,
)

if TYPE_CHECKING:
    from types import TracebackType

    from .audio import AudioSubscription
    from .client import ItanniXClient

_LOGGER = logging.getLogger(__name__)

type FunctionHandler = Callable[[FunctionCall], Awaitable[Any]]

_END: Final = object()
# Responses of turns that ended early (cancelled) may still report; remember a few.
_STALE_RESPONSES: Final = 32


class _Turn:
    """What one user input produces: one or more responses (tool calls chain them)."""

    def __init__(self, session: RealtimeSession, modalities: tuple[str, ...] | None):
        self._session = session
        self.modalities = modalities
        self.response_ids: list[str] = []
        self.usage = Usage()
        self.cancelled = False
        self.awaiting_response = False
        self.request_ids: set[str] = set()
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


class Reply(_Turn):
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

    async def cancel(self) -> None:
        """Cut the reply short."""
        await self._session.cancel_turn(self)


class AudioTurn(_Turn):
    """A spoken exchange: the user's audio in, the assistant's voice out.

    Feed the user's 16 kHz mono PCM with ``feed_audio()``; the service's VAD detects the
    end of speech and answers. ``reply_audio()`` yields the assistant's voice (16 kHz
    mono s16 chunks) for this turn only.
    """

    def __init__(
        self,
        session: RealtimeSession,
        drain: float,
        spawn: Callable[[Awaitable[None]], asyncio.Task[None]],
    ) -> None:
        """Initialize; use ``RealtimeSession.start_audio_turn()``."""
        super().__init__(session, None)
        self._spawn = spawn
        self.speech_started = asyncio.Event()
        self.speech_stopped = asyncio.Event()
        self._transcript: str | None = None
        self._transcript_event = asyncio.Event()
        self._audio: AudioSubscription | None = None
        self._audio_ready = asyncio.Event()
        self._audio_started = 0
        self._audio_stopped = 0
        self._responses_done = False
        self._drain = drain
        self._drain_task: asyncio.Task[None] | None = None

    def feed_audio(self, pcm: bytes) -> None:
        """Send the user's audio (16 kHz mono s16 PCM)."""
        self._session.feed_audio(pcm)

    def set_transcript(self, transcript: str) -> None:
        """Record the user's input transcription (from the session)."""
        self._transcript = transcript
        self._transcript_event.set()

    async def transcript(self) -> str | None:
        """Return what the service understood the user said.

        None when input transcription is off (the turn ends without one).
        """
        waiter = asyncio.ensure_future(self._transcript_event.wait())
        done_waiter = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait(
                (waiter, done_waiter), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            done_waiter.cancel()
        if self._transcript is None and self._error is not None:
            raise self._error
        return self._transcript

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

    async def cancel(self) -> None:
        """Cut the reply short (stop generating and stop speaking)."""
        await self._session.cancel_turn(self)

    def on_response_created(self) -> None:
        """Start collecting the reply's voice (from the session)."""
        if self._audio is None and not self.done:
            self._audio = self._session.connection.speaker.subscribe()
            self._audio_ready.set()

    def on_output_audio(self, etype: str) -> None:
        """Track the service's output audio buffer (from the session)."""
        if etype in OUTPUT_AUDIO_STARTED:
            self._audio_started += 1
        elif etype in OUTPUT_AUDIO_STOPPED:
            self._audio_stopped += 1
        elif etype in OUTPUT_AUDIO_CLEARED:
            self._audio_stopped = self._audio_started
        self._maybe_end_audio()

    def on_responses_done(self) -> None:
        """Note that the last response is done (from the session)."""
        self._responses_done = True
        self._maybe_end_audio()

    def _maybe_end_audio(self) -> None:
        # The voice plays on after response.done: end with output_audio_buffer.stopped
        # when the service announced the buffer, plus a drain for frames in flight.
        if not self._responses_done or self._audio_stopped < self._audio_started:
            return
        if self._audio is None or self._drain_task is not None:
            return
        self._drain_task = self._spawn(self._end_audio_after(self._drain))

    async def _end_audio_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.end_audio()

    def end_audio(self) -> None:
        """End ``reply_audio()`` after what is already queued."""
        if self._audio is not None:
            self._audio.close()
        self._audio_ready.set()

    def finish(self, error: ItanniXError | None = None) -> None:
        """End the turn; its voice ends now only if it failed or was cancelled."""
        super().finish(error)
        if error is not None or self.cancelled:
            self.end_audio()
        self._audio_ready.set()
        self._transcript_event.set()

    def release(self) -> None:
        """Drop everything the turn holds (session closing)."""
        if self._drain_task is not None:
            self._drain_task.cancel()
        self.end_audio()


class RealtimeSession:
    """A conversation with an ItanniX assistant over one realtime connection.

    Turns run one at a time. Function calls are answered by ``function_handler``; every
    call gets exactly one ``function_call_output`` (the handler's result, or a JSON error
    when it raises, times out or there is no handler), and after all calls of a response
    are answered one ``response.create`` lets the assistant go on.
    """

    def __init__(
        self,
        connection: RealtimeConnection,
        *,
        function_handler: FunctionHandler | None = None,
        function_timeout: float = 30.0,
        audio_drain: float = 0.3,
        detach_idle_microphone: bool = True,
    ) -> None:
        """Wrap a connection (connected or not; ``connect()`` connects it)."""
        self.connection = connection
        self.function_handler = function_handler
        self.function_timeout = function_timeout
        self._audio_drain = audio_drain
        self._detach_idle = detach_idle_microphone
        self._tracker = FunctionCallTracker()
        self._turn: _Turn | None = None
        self._response_calls: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered: set[str] = set()
        self._stale: deque[str] = deque(maxlen=_STALE_RESPONSES)
        self._turn_lock = asyncio.Lock()
        self._active_responses: set[str] = set()
        self._speaking = False
        self.usage = Usage()
        self._remove_listener = connection.add_listener(self._on_event)
        self._remove_close_listener = connection.add_close_listener(self._on_closed)

    @classmethod
    async def open(
        cls,
        client: ItanniXClient,
        *,
        function_handler: FunctionHandler | None = None,
        function_timeout: float = 30.0,
        audio_drain: float = 0.3,
        detach_idle_microphone: bool = True,
        **connection_options: Any,
    ) -> RealtimeSession:
        """Create a connection, connect it and return the session around it."""
        session = cls(
            RealtimeConnection(client, **connection_options),
            function_handler=function_handler,
            function_timeout=function_timeout,
            audio_drain=audio_drain,
            detach_idle_microphone=detach_idle_microphone,
        )
        try:
            await session.connect()
        except BaseException:
            await session.close()
            raise
        return session

    async def __aenter__(self) -> Self:
        """Return self (connect with ``open()`` or ``connect()`` first)."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the session."""
        await self.close()

    async def connect(self) -> None:
        """Connect the underlying connection."""
        await self.connection.connect()
        if self._detach_idle:
            self.connection.detach_microphone()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self.connection.closed

    @property
    def current_turn(self) -> Reply | AudioTurn | None:
        """The turn in progress, if any."""
        turn = self._turn
        if isinstance(turn, Reply | AudioTurn) and not turn.done:
            return turn
        return None

    # turns

    async def ask(self, text: str) -> Reply:
        """Send a typed message; return the streaming reply (text modality)."""
        item: Event = {
            "type": CONVERSATION_ITEM_CREATE,
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }
        return await self._start_reply(item)

    async def respond(self, instructions: str) -> Reply:
        """Have the assistant speak first (text modality), guided by ``instructions``.

        No user message is added: the instructions apply to this response only.
        """
        return await self._start_reply(None, instructions=instructions)

    async def _start_reply(self, item: Event | None, **options: Any) -> Reply:
        """Start a text turn: send ``item`` (if any), then ask for the response."""
        async with self._turn_lock:
            await self._end_previous_turn()
            reply = Reply(self, ("text",))
            self._turn = reply
            try:
                if item is not None:
                    await self._send(reply, item)
                await self._request_response(reply, **options)
            except ItanniXError as err:
                reply.finish(err)
                raise
            return reply

    async def start_audio_turn(self) -> AudioTurn:
        """Start listening: feed audio to the returned turn as the user speaks."""
        async with self._turn_lock:
            await self._end_previous_turn(interrupt=True)
            if self.closed:
                raise self.connection.close_reason or CannotConnectError(
                    "The session is closed"
                )
            turn = AudioTurn(self, self._audio_drain, self._spawn)
            self._turn = turn
            self.connection.microphone.clear()
            self.connection.attach_microphone()
            return turn

    def feed_audio(self, pcm: bytes) -> None:
        """Send user audio (16 kHz mono s16 PCM) on the outbound track."""
        self.connection.microphone.feed(pcm)

    async def cancel_turn(self, turn: _Turn | None = None) -> None:
        """Cut the current (or given) turn short: stop the reply and its voice."""
        turn = turn or self._turn
        if turn is None:
            return
        if turn.done:
            # Generated, but maybe still playing: the voice stops all the same.
            if isinstance(turn, AudioTurn) and self._speaking:
                with contextlib.suppress(CannotConnectError):
                    await self._send(None, {"type": OUTPUT_AUDIO_BUFFER_CLEAR})
                self._speaking = False
                turn.end_audio()
            return
        turn.cancelled = True
        self._stale.extend(turn.response_ids)
        turn.finish()
        with contextlib.suppress(CannotConnectError):
            # Tagged but owned by no turn: "nothing to cancel" must not fail the next.
            await self._send(None, {"type": RESPONSE_CANCEL})
            await self._send(None, {"type": OUTPUT_AUDIO_BUFFER_CLEAR})
        self._turn_over(turn)

    async def _end_previous_turn(self, *, interrupt: bool = False) -> None:
        previous = self._turn
        if previous is not None and not previous.done:
            if isinstance(previous, AudioTurn):
                # A new spoken turn interrupts the old one (barge-in).
                await self.cancel_turn(previous)
                return
            await previous.wait()
        if interrupt and (self._active_responses or self._speaking):
            # A reply nobody waits for any more (its turn was abandoned, or only its
            # voice is still playing): the user talks over it, so cut it.
            self._stale.extend(self._active_responses)
            with contextlib.suppress(CannotConnectError):
                await self._send(None, {"type": RESPONSE_CANCEL})
                await self._send(None, {"type": OUTPUT_AUDIO_BUFFER_CLEAR})
            self._speaking = False

    async def _request_response(self, turn: _Turn | None, **options: Any) -> None:
        response: dict[str, Any] = dict(options)
        if turn is not None and turn.modalities is not None:
            response["modalities"] = list(turn.modalities)
        event: Event = {"type": RESPONSE_CREATE}
        if response:
            event["response"] = response
        if turn is not None:
            turn.awaiting_response = True
        await self._send(turn, event)

    async def _send(self, turn: _Turn | None, event: Event) -> None:
        """Send an event, tagged so that an error about it finds its turn."""
        event_id = f"evt_{secrets.token_hex(8)}"
        if turn is not None:
            turn.request_ids.add(event_id)
        await self.connection.send({"event_id": event_id, **event})

    def _turn_over(self, turn: _Turn) -> None:
        if self._detach_idle and isinstance(turn, AudioTurn) and self._turn is turn:
            self.connection.detach_microphone()

    # events

    def _on_event(self, event: Event) -> None:
        for call in self._tracker.feed(event):
            self._start_call(call)
        etype = event.get("type", "")
        parsed = parse_event(event)
        turn = self._turn
        rid = response_id_of(event)
        self._track_output(parsed, etype)
        if rid is not None and rid in self._stale:
            return  # a cancelled turn's response winding down
        if isinstance(parsed, ResponseDone):
            self._on_response_done(parsed)
            return
        if isinstance(parsed, ServerErrorEvent):
            self._on_server_error(parsed)
            return
        if turn is None:
            return
        if isinstance(turn, AudioTurn) and etype.startswith("output_audio_buffer."):
            if rid is None or rid in turn.response_ids:
                turn.on_output_audio(etype)
            return
        if turn.done:
            return
        if isinstance(parsed, ResponseCreated):
            turn.awaiting_response = False
            if parsed.response_id:
                turn.response_ids.append(parsed.response_id)
            if isinstance(turn, AudioTurn):
                turn.on_response_created()
        elif isinstance(parsed, TextDelta | TranscriptDelta):
            turn.add_delta(parsed.delta, parsed.item_id)
        elif isinstance(turn, AudioTurn):
            if isinstance(parsed, InputTranscript):
                turn.set_transcript(parsed.transcript)
            elif isinstance(parsed, SpeechStarted):
                turn.speech_started.set()
            elif isinstance(parsed, SpeechStopped):
                turn.speech_stopped.set()

    def _track_output(self, parsed: object, etype: str) -> None:
        """Whether the service is producing or playing a reply, whoever it is for."""
        if isinstance(parsed, ResponseCreated) and parsed.response_id:
            self._active_responses.add(parsed.response_id)
        elif isinstance(parsed, ResponseDone) and parsed.response_id:
            self._active_responses.discard(parsed.response_id)
        elif etype in OUTPUT_AUDIO_STARTED:
            self._speaking = True
        elif etype in OUTPUT_AUDIO_STOPPED or etype in OUTPUT_AUDIO_CLEARED:
            self._speaking = False

    def _on_response_done(self, done: ResponseDone) -> None:
        if done.usage is not None:
            self.usage += done.usage
        turn = self._turn if self._turn is not None and not self._turn.done else None
        if turn is not None and done.usage is not None:
            turn.usage += done.usage
        calls, self._response_calls = self._response_calls, []
        if calls and done.status not in (
            RESPONSE_STATUS_CANCELLED,
            RESPONSE_STATUS_FAILED,
        ):
            # The turn goes on once the tools have answered.
            self._spawn(self._continue_after_calls(calls, turn))
            return
        if turn is None:
            return
        if done.status == RESPONSE_STATUS_FAILED:
            redact = self.connection.client.redact
            turn.finish(
                ServerError(redact(done.error_message or "The response failed"))
            )
        else:
            turn.cancelled = done.status == RESPONSE_STATUS_CANCELLED
            turn.finish()
        if isinstance(turn, AudioTurn):
            turn.on_responses_done()
        self._turn_over(turn)

    def _on_server_error(self, error: ServerErrorEvent) -> None:
        turn = self._turn
        # What the service says is scrubbed like its HTTP answers: it must never pass
        # our credentials on, even if it echoes them.
        redact = self.connection.client.redact
        message, code = (
            redact(error.message),
            redact(error.code) if error.code else None,
        )
        _LOGGER.debug("Server error event %s: %s", code, message)
        if turn is None or turn.done:
            return
        if error.event_id is not None:
            concerns_turn = error.event_id in turn.request_ids
        else:
            concerns_turn = turn.awaiting_response
        if concerns_turn:
            # The error answers what we just asked for.
            turn.finish(ProtocolError(message, code=code))
            if isinstance(turn, AudioTurn):
                turn.end_audio()
            self._turn_over(turn)

    def _on_closed(self, reason: ItanniXError | None) -> None:
        turn = self._turn
        if turn is not None and not turn.done:
            turn.finish(reason or CannotConnectError("The session was closed"))
        if isinstance(turn, AudioTurn):
            turn.release()
        for task in list(self._tasks):
            task.cancel()

    # function calls

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_call(self, call: FunctionCall) -> None:
        if call.call_id in self._answered or self.closed:
            return
        self._answered.add(call.call_id)
        self._response_calls.append(self._spawn(self._answer_call(call)))

    async def _answer_call(self, call: FunctionCall) -> None:
        output = await self._run_handler(call)
        try:
            await self._send(
                None,
                {
                    "type": CONVERSATION_ITEM_CREATE,
                    "item": {
                        "type": "function_call_output",
                        "call_id": call.call_id,
                        "output": output,
                    },
                },
            )
        except CannotConnectError:
            _LOGGER.debug("Session closed before the output of %s", call.name)

    async def _run_handler(self, call: FunctionCall) -> str:
        handler = self.function_handler
        if handler is None:
            return json.dumps({"error": f"No handler for function {call.name}"})
        try:
            async with asyncio.timeout(self.function_timeout):
                result = await handler(call)
        except TimeoutError:
            _LOGGER.warning("Function %s timed out", call.name)
            return json.dumps({"error": f"Function {call.name} timed out"})
        except Exception as err:  # noqa: BLE001 - any failure still gets an output
            _LOGGER.warning("Function %s failed: %s", call.name, err)
            return json.dumps({"error": f"{type(err).__name__}: {err}"})
        if isinstance(result, str):
            return result
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return json.dumps({"result": str(result)})

    async def _continue_after_calls(
        self, calls: Iterable[asyncio.Task[None]], turn: _Turn | None
    ) -> None:
        await asyncio.gather(*calls, return_exceptions=True)
        if self.closed or (turn is not None and turn.done):
            return
        try:
            await self._request_response(turn)
        except CannotConnectError:
            _LOGGER.debug("Session closed before the follow-up response")

    # closing

    async def close(self) -> None:
        """Close the session and its connection; idempotent."""
        self._remove_listener()
        self._remove_close_listener()
        self._on_closed(None)
        tasks = list(self._tasks)
        await self.connection.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
