"""High-level realtime conversation: typed turns, spoken turns and function calls.

Turns run one at a time. Every ``response.*`` event is attributed to its response and
reaches only the turn that owns that response (``routing.py``); function calls are kept
per response (``calls.py``). The session waits (bounded) for ``session.created`` before
it relies on the session's configuration, and adds a caller's tools and context to the
assistant's own instead of replacing them (``config.py``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final, Self

from .calls import CallRunner, FunctionHandler
from .config import (
    AssistantConfig,
    Tool,
    merge_instructions,
    merge_tools,
    parse_assistant_config,
    tools_signature,
)
from .connection import RealtimeConnection
from .errors import CannotConnectError, ItanniXError, ProtocolError, ServerError
from .events import (
    CONVERSATION_ITEM_CREATE,
    ERROR_ACTIVE_RESPONSE,
    ERROR_SESSION_EXPIRED,
    INPUT_AUDIO_BUFFER_CLEAR,
    OUTPUT_AUDIO_BUFFER_CLEAR,
    RESPONSE_CANCEL,
    RESPONSE_CREATE,
    RESPONSE_STATUS_CANCELLED,
    RESPONSE_STATUS_COMPLETED,
    RESPONSE_STATUS_FAILED,
    RESPONSE_STATUS_INCOMPLETE,
    SESSION_UPDATE,
    Event,
    FunctionCall,
    FunctionCallTracker,
    InputCommitted,
    InputTranscript,
    InputTranscriptDelta,
    InputTranscriptFailed,
    OutputAudio,
    ResponseCreated,
    ResponseDone,
    ServerErrorEvent,
    SessionCreated,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDelta,
    Usage,
    parse_event,
    response_id_of,
)
from .logs import OnceLogger
from .routing import Responses
from .turns import AudioTurn, Reply, TranscriptionError, Turn

if TYPE_CHECKING:
    from types import TracebackType

    from .client import ItanniXClient

__all__ = [
    "AudioTurn",
    "FunctionHandler",
    "RealtimeSession",
    "Reply",
    "SessionExpiredError",
    "Turn",
]

_LOGGER = logging.getLogger(__name__)

# How long connecting waits for session.created (the assistant's configuration).
SESSION_CREATED_TIMEOUT: Final = 5.0
# How long a new turn waits for a response nobody follows any more to end.
SETTLE_TIMEOUT: Final = 3.0
# Client events remembered to match the service's errors to them.
_REMEMBERED_REQUESTS: Final = 256
# Conversation items of spoken input remembered for their late transcripts.
_REMEMBERED_ITEMS: Final = 64


class SessionExpiredError(CannotConnectError):
    """The service ended the session at its maximum duration."""


class IncompleteReplyError(ServerError):
    """The service cut the reply short (``response.done`` status ``incomplete``)."""


class RealtimeSession:
    """A conversation with an ItanniX assistant over one realtime connection.

    Function calls are answered by ``function_handler``; every call gets exactly one
    ``function_call_output`` (the handler's result, or a JSON error when it raises,
    times out, there is no handler, or its response was interrupted), and after all
    calls of a followed response are answered one ``response.create`` lets the
    assistant go on.
    """

    def __init__(
        self,
        connection: RealtimeConnection,
        *,
        function_handler: FunctionHandler | None = None,
        function_timeout: float = 30.0,
        audio_drain: float = 0.3,
        detach_idle_microphone: bool = True,
        session_created_timeout: float = SESSION_CREATED_TIMEOUT,
    ) -> None:
        """Wrap a connection (connected or not; ``connect()`` connects it)."""
        self.connection = connection
        self._audio_drain = audio_drain
        self._detach_idle = detach_idle_microphone
        self._created_timeout = session_created_timeout
        self._tracker = FunctionCallTracker()
        self._responses = Responses()
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls = CallRunner(
            self._send_untagged, self._spawn, timeout=function_timeout
        )
        self._calls.handler = function_handler
        self._turn: Turn | None = None
        self._turn_lock = asyncio.Lock()
        self._requests: OrderedDict[str, Turn] = OrderedDict()
        self._items: OrderedDict[str, AudioTurn] = OrderedDict()
        self._assistant = AssistantConfig()
        self._created = asyncio.Event()
        self._tools: list[Tool] | None = None
        self._context: str | None = None
        self._installed: dict[str, Any] = {}
        # session.update events sent, by event id: the fields each one set.
        self._configuring: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._opened_at: float | None = None
        self._junk = OnceLogger(_LOGGER)
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
        session_created_timeout: float = SESSION_CREATED_TIMEOUT,
        **connection_options: Any,
    ) -> RealtimeSession:
        """Create a connection, connect it and return the session around it."""
        session = cls(
            RealtimeConnection(client, **connection_options),
            function_handler=function_handler,
            function_timeout=function_timeout,
            audio_drain=audio_drain,
            detach_idle_microphone=detach_idle_microphone,
            session_created_timeout=session_created_timeout,
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
        """Connect, then wait (bounded) for the service to describe the session."""
        await self.connection.connect()
        self._opened_at = time.monotonic()
        if self._detach_idle:
            self.connection.detach_microphone()
        try:
            async with asyncio.timeout(self._created_timeout):
                await self._created.wait()
        except TimeoutError:
            self.connection.client.log_once.warning(
                ("session", "not described"),
                "ItanniX did not describe the session within %s s; going on without "
                "the assistant's own configuration",
                self._created_timeout,
            )

    # properties

    @property
    def function_handler(self) -> FunctionHandler | None:
        """What answers the assistant's function calls."""
        return self._calls.handler

    @function_handler.setter
    def function_handler(self, handler: FunctionHandler | None) -> None:
        self._calls.handler = handler

    @property
    def function_timeout(self) -> float:
        """Seconds a function call may take before it is answered with an error."""
        return self._calls.timeout

    @function_timeout.setter
    def function_timeout(self, seconds: float) -> None:
        self._calls.timeout = seconds

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self.connection.closed

    @property
    def age(self) -> float:
        """Seconds since the session connected (0 before)."""
        return 0.0 if self._opened_at is None else time.monotonic() - self._opened_at

    @property
    def assistant_config(self) -> AssistantConfig:
        """The assistant's own configuration, as ``session.created`` described it."""
        return self._assistant

    @property
    def tools(self) -> list[Tool]:
        """The session's tools as this client last set them (or the assistant's)."""
        return merge_tools(self._assistant.tools, self._tools or [])

    @property
    def current_turn(self) -> Reply | AudioTurn | None:
        """The turn in progress, if any."""
        turn = self._turn
        if isinstance(turn, Reply | AudioTurn) and not turn.done:
            return turn
        return None

    # configuration

    async def configure(
        self, *, tools: Sequence[Tool] | None = None, context: str | None = None
    ) -> None:
        """Add tools and context (a system prompt) to the assistant's own.

        Each is sent with ``session.update`` as the union with what the assistant was
        configured with, and only when it changed. Given again each turn, the context
        stays current (the time in it, a caller's extra instructions).
        """
        if tools is not None:
            self._tools = list(tools)
        if context is not None:
            self._context = context
        await self._apply_configuration()

    async def _apply_configuration(self) -> None:
        update: dict[str, Any] = {}
        if self._tools is not None and (self._tools or "tools" in self._installed):
            merged = merge_tools(self._assistant.tools, self._tools)
            if self._installed.get("tools") != tools_signature(merged):
                update["tools"] = merged
                update["tool_choice"] = "auto"
        if (
            self._context is not None
            and self._assistant.instructions is not None
            and (self._context or "instructions" in self._installed)
        ):
            instructions = merge_instructions(
                self._assistant.instructions, self._context
            )
            if self._installed.get("instructions") != instructions:
                update["instructions"] = instructions
        elif self._context and "message" not in self._installed:
            # The assistant's instructions are unknown: a system message adds the
            # context without replacing them; once, so messages do not pile up.
            self._installed["message"] = self._context
            await self.add_message("system", self._context)
        if not update:
            return
        event_id = await self._send_untagged(
            {"type": SESSION_UPDATE, "session": update}
        )
        self._configuring[event_id] = tuple(update)
        while len(self._configuring) > _REMEMBERED_ITEMS:
            self._configuring.popitem(last=False)
        if "tools" in update:
            self._installed["tools"] = tools_signature(update["tools"])
        if "instructions" in update:
            self._installed["instructions"] = update["instructions"]

    async def add_message(self, role: str, text: str) -> None:
        """Add a message to the conversation without asking for a reply.

        ``role``: ``user``, ``assistant`` or ``system`` (history, or context).
        """
        kind = "text" if role == "assistant" else "input_text"
        await self._send_untagged(
            {
                "type": CONVERSATION_ITEM_CREATE,
                "item": {
                    "type": "message",
                    "role": role,
                    "content": [{"type": kind, "text": text}],
                },
            }
        )

    async def add_history(self, messages: Iterable[tuple[str, str]]) -> None:
        """Give the session the conversation so far: ``(role, text)`` in order."""
        for role, text in messages:
            await self.add_message(role, text)

    async def clear_input_audio(self) -> None:
        """Forget the user's audio not yet answered (queued here, or at the service)."""
        self.connection.microphone.clear()
        with contextlib.suppress(CannotConnectError):
            await self._send_untagged({"type": INPUT_AUDIO_BUFFER_CLEAR})

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
            reply = Reply(("text",), self.cancel_turn)
            self._turn = reply
            try:
                self._raise_if_closed()
                await self._settle(reply)
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
            self._raise_if_closed()
            turn = AudioTurn(
                self.cancel_turn,
                microphone=self.connection.microphone,
                speaker=self.connection.speaker,
                drain=self._audio_drain,
                transcribes=self.connection.transcribes,
            )
            self._turn = turn
            self.connection.microphone.clear()
            self.connection.attach_microphone()
            return turn

    def feed_audio(self, pcm: bytes) -> None:
        """Send user audio (16 kHz mono s16 PCM) on the outbound track."""
        self.connection.microphone.feed(pcm)

    async def cancel_turn(
        self, turn: Turn | None = None, *, forget_input: bool = False
    ) -> None:
        """Cut the current (or given) turn short: stop its reply and its voice.

        Only what is the turn's own is stopped (its responses, by id; its voice):
        cancelling a turn late, after the next one started, never touches the next.
        ``forget_input``: also drop the user's audio not yet answered, if the turn is
        still the current one.
        """
        turn = turn or self._turn
        if turn is None:
            return
        current = self._turn is turn
        # A spoken turn the service's VAD has not answered yet: whatever response
        # starts now is its, as long as it is the current turn.
        pending = current and not turn.done and turn.awaiting_response
        # A voice not ended yet may still play, whether or not the service said so
        # (it may send no output_audio_buffer events at all).
        voiced = isinstance(turn, AudioTurn) and turn.audio_open
        if not turn.done:
            turn.cancelled = True
            turn.finish()
            self._turn_over(turn)
        with contextlib.suppress(CannotConnectError):
            await self._cancel_responses(self._responses.of(turn), untargeted=pending)
            if (
                self._responses.voice_of(turn)
                or voiced
                or (pending and isinstance(turn, AudioTurn))
            ):
                await self._silence()
            if forget_input and current:
                await self.clear_input_audio()
        if isinstance(turn, AudioTurn):
            turn.end_audio()

    async def _cancel_responses(
        self, response_ids: Iterable[str], *, untargeted: bool = False
    ) -> None:
        """Cancel responses by id (``untargeted``: whichever is in progress)."""
        ids = list(response_ids)
        for response_id in ids:
            await self._send_untagged(
                {"type": RESPONSE_CANCEL, "response_id": response_id}
            )
        if untargeted and not ids:
            # Tagged but owned by no turn: "nothing to cancel" fails nothing.
            await self._send_untagged({"type": RESPONSE_CANCEL})

    async def _silence(self) -> None:
        """Stop the voice the service is playing."""
        self._responses.quiet()
        with contextlib.suppress(CannotConnectError):
            await self._send_untagged({"type": OUTPUT_AUDIO_BUFFER_CLEAR})

    async def _end_previous_turn(self, *, interrupt: bool = False) -> None:
        previous = self._turn
        if previous is not None and not previous.done:
            if isinstance(previous, AudioTurn) or interrupt:
                # A new spoken turn interrupts the old one (barge-in).
                await self.cancel_turn(previous)
            else:
                await previous.wait()
        if not interrupt:
            return
        # The user talks over a reply nobody waits for any more (its turn was
        # abandoned, or only its voice still plays): cut it, and end that voice.
        # Nothing of the new turn exists yet, so all of it is old.
        with contextlib.suppress(CannotConnectError):
            await self._cancel_responses(set(self._responses.active))
            if self._responses.speaking or (
                isinstance(previous, AudioTurn) and previous.audio_open
            ):
                await self._silence()
        if isinstance(previous, AudioTurn):
            previous.end_audio()

    async def _settle(self, turn: Turn) -> None:
        """Before asking for a response: end those nobody follows (bounded)."""
        if not (others := self._responses.others(turn)):
            return
        await self._cancel_responses(others)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await self._responses.wait_none_but(turn)

    async def _request_response(self, turn: Turn, **options: Any) -> None:
        response: dict[str, Any] = dict(options)
        if turn.modalities is not None:
            response["modalities"] = list(turn.modalities)
        event: Event = {"type": RESPONSE_CREATE}
        if response:
            event["response"] = response
        turn.await_response()
        await self._send(turn, event)

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise self.connection.close_reason or CannotConnectError(
                "The session is closed"
            )

    # sending

    async def _send(self, turn: Turn | None, event: Event) -> str:
        """Send an event, tagged so that an error about it finds its turn."""
        event_id = f"evt_{secrets.token_hex(8)}"
        if turn is not None:
            self._requests[event_id] = turn
            while len(self._requests) > _REMEMBERED_REQUESTS:
                self._requests.popitem(last=False)
        await self.connection.send({"event_id": event_id, **event})
        return event_id

    async def _send_untagged(self, event: Event) -> str:
        return await self._send(None, event)

    def _turn_over(self, turn: Turn) -> None:
        if self._detach_idle and isinstance(turn, AudioTurn) and self._turn is turn:
            self.connection.detach_microphone()

    # events

    def _on_event(self, event: Event) -> None:
        response_id = response_id_of(event)
        for call in self._tracker.feed(event):
            self._on_call(call, response_id)
        parsed = parse_event(event)
        if parsed is not None and (handler := _HANDLERS.get(type(parsed))) is not None:
            handler(self, parsed)

    def _on_session_created(self, event: SessionCreated) -> None:
        self._assistant = parse_assistant_config(event.session)
        first = not self._created.is_set()
        self._created.set()
        if not first or self._tools is not None or self._context is not None:
            # Configured before the service described the session: add to what it
            # described now.
            self._installed.clear()
            self._spawn(self._reconfigure())

    async def _reconfigure(self) -> None:
        with contextlib.suppress(CannotConnectError):
            await self._apply_configuration()

    def _on_response_created(self, event: ResponseCreated) -> None:
        response_id = event.response_id
        if not response_id:
            self._junk.warning("no-id", "Ignoring a response event without an id")
            return
        turn = self._turn
        owner = (
            turn
            if turn is not None and not turn.done and turn.awaiting_response
            else None
        )
        self._responses.created(response_id, owner)
        if owner is not None:
            owner.on_response_created(response_id)

    def _on_reply_delta(self, event: TextDelta | TranscriptDelta) -> None:
        # Only a response in progress says more: a late delta of a finished one (its
        # turn may still wait for a function call's follow-up) is dropped.
        if (owner := self._responses.producing(event.response_id)) is not None:
            owner.add_delta(event.delta, event.item_id)

    def _on_response_done(self, event: ResponseDone) -> None:
        response_id = event.response_id
        if response_id is None or self._responses.owner(response_id) is None:
            if response_id is None:
                self._junk.warning("no-id", "Ignoring a response event without an id")
            elif response_id in self._responses.active:
                self._responses.done(response_id)
            return
        if response_id not in self._responses.active:
            return  # a repeat
        self._responses.done(response_id)
        if event.usage is not None:
            self.usage += event.usage
        calls = self._calls.take(response_id)
        owner = self._responses.following(response_id)
        if owner is None:
            return
        if event.usage is not None:
            owner.usage += event.usage
        if calls and event.status == RESPONSE_STATUS_COMPLETED:
            # The turn goes on once the tools have answered.
            self._spawn(self._continue_after_calls(calls, owner))
            return
        self._end_turn(owner, event)

    def _end_turn(self, turn: Turn, done: ResponseDone) -> None:
        redact = self.connection.client.redact
        if done.status == RESPONSE_STATUS_FAILED:
            turn.finish(
                ServerError(redact(done.error_message or "The response failed"))
            )
        elif done.status == RESPONSE_STATUS_INCOMPLETE:
            reason = redact(done.error_message or "incomplete")
            turn.finish(IncompleteReplyError(f"The reply was cut short ({reason})"))
        else:
            turn.cancelled = done.status == RESPONSE_STATUS_CANCELLED
            turn.finish()
        if isinstance(turn, AudioTurn):
            turn.on_responses_done()
        self._turn_over(turn)

    def _on_output_audio(self, event: OutputAudio) -> None:
        playing = set(self._responses.playing)
        self._responses.audio(event.kind, event.response_id)
        if event.response_id is None:
            if event.kind == "started":
                return
            # The buffer as a whole stopped or was cleared: so did every voice in it
            # (else the turn whose voice played would wait for its stop for ever).
            affected = playing
        else:
            affected = {event.response_id}
        for response_id in affected:
            owner = self._responses.owner(response_id)
            if isinstance(owner, AudioTurn):
                owner.on_output_audio(f"output_audio_buffer.{event.kind}", response_id)

    def _on_server_error(self, error: ServerErrorEvent) -> None:
        # What the service says is scrubbed like its HTTP answers: it must never pass
        # our credentials on, even if it echoes them.
        redact = self.connection.client.redact
        message = redact(error.message)
        code = redact(error.code) if error.code else None
        _LOGGER.debug("Server error event %s: %s", code, message)
        if code == ERROR_SESSION_EXPIRED:
            self._expire(message)
            return
        if (fields := self._configuring.pop(error.event_id or "", None)) is not None:
            # What we added to the session was refused: say so, and send it again
            # with the next turn's configuration.
            self.connection.client.log_once.warning(
                ("session.update refused", code),
                "ItanniX refused the session's tools or context: %s",
                message,
            )
            for field in fields:
                self._installed.pop(field, None)
            return
        turn = self._turn_of_error(error)
        if turn is None or turn.done:
            return
        if code == ERROR_ACTIVE_RESPONSE and not turn.asked_again:
            # Another response was still going (any response that started since
            # was that one, not ours): ask again once it ended.
            turn.asked_again = True
            for response_id in turn.disown_since_request():
                self._responses.disown(response_id)
            self._spawn(self._retry_response(turn))
            return
        turn.finish(ProtocolError(message, code=code))
        if isinstance(turn, AudioTurn):
            turn.end_audio()
        self._turn_over(turn)

    def _turn_of_error(self, error: ServerErrorEvent) -> Turn | None:
        if error.event_id is not None:
            return self._requests.get(error.event_id)
        turn = self._turn
        return turn if turn is not None and turn.awaiting_response else None

    async def _retry_response(self, turn: Turn) -> None:
        await self._settle(turn)
        if turn.done or self.closed:
            return
        try:
            await self._request_response(turn)
        except CannotConnectError as err:
            turn.finish(err)

    def _expire(self, message: str) -> None:
        age = self.age
        _LOGGER.debug("Realtime session expired after %.0f s: %s", age, message)
        self.connection.client.note_session_expired(age)
        self.connection.fail(SessionExpiredError(message))

    def _audio_turn_of(self, item_id: str | None) -> AudioTurn | None:
        """The spoken turn an input item belongs to (else the current one)."""
        if item_id is not None and (turn := self._items.get(item_id)) is not None:
            return turn
        current = self._turn
        if isinstance(current, AudioTurn) and not current.has_transcript:
            if item_id is not None:
                self._remember_item(item_id, current)
            return current
        return None

    def _remember_item(self, item_id: str, turn: AudioTurn) -> None:
        self._items[item_id] = turn
        while len(self._items) > _REMEMBERED_ITEMS:
            self._items.popitem(last=False)

    def _on_speech(self, event: SpeechStarted | SpeechStopped) -> None:
        turn = self._turn
        if isinstance(turn, AudioTurn) and not turn.done:
            if event.item_id is not None:
                self._remember_item(event.item_id, turn)
            turn.on_speech(isinstance(event, SpeechStarted), event.item_id)

    def _on_committed(self, event: InputCommitted) -> None:
        turn = self._turn
        if isinstance(turn, AudioTurn) and not turn.done and event.item_id:
            self._remember_item(event.item_id, turn)

    def _on_input_transcript(self, event: InputTranscript) -> None:
        if (turn := self._audio_turn_of(event.item_id)) is not None:
            turn.set_transcript(event.transcript)

    def _on_input_transcript_delta(self, event: InputTranscriptDelta) -> None:
        if (turn := self._audio_turn_of(event.item_id)) is not None:
            turn.on_transcript_delta(event.delta)

    def _on_input_transcript_failed(self, event: InputTranscriptFailed) -> None:
        if (turn := self._audio_turn_of(event.item_id)) is not None:
            redact = self.connection.client.redact
            turn.transcription_failed(
                TranscriptionError(redact(event.message), code=event.code)
            )

    def _on_closed(self, reason: ItanniXError | None) -> None:
        turn = self._turn
        error = reason or CannotConnectError("The session was closed")
        if isinstance(turn, AudioTurn):
            turn.release(error)
        elif turn is not None:
            turn.finish(error)
        for task in list(self._tasks):
            task.cancel()

    # function calls

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_call(self, call: FunctionCall, response_id: str | None) -> None:
        if self._calls.seen(call) or self.closed:
            return
        if self._responses.producing(response_id) is None:
            self._calls.abandon(call)
            return
        assert response_id is not None
        self._calls.start(call, response_id)

    async def _continue_after_calls(
        self, calls: Iterable[asyncio.Task[None]], turn: Turn
    ) -> None:
        await asyncio.gather(*calls, return_exceptions=True)
        if self.closed or turn.done:
            return
        try:
            await self._request_response(turn)
        except CannotConnectError as err:
            _LOGGER.debug("Session closed before the follow-up response")
            turn.finish(err)

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


type _Handler = Callable[[RealtimeSession, Any], None]

_HANDLERS: Final[Mapping[type, _Handler]] = {
    SessionCreated: RealtimeSession._on_session_created,  # noqa: SLF001
    ResponseCreated: RealtimeSession._on_response_created,  # noqa: SLF001
    TextDelta: RealtimeSession._on_reply_delta,  # noqa: SLF001
    TranscriptDelta: RealtimeSession._on_reply_delta,  # noqa: SLF001
    ResponseDone: RealtimeSession._on_response_done,  # noqa: SLF001
    OutputAudio: RealtimeSession._on_output_audio,  # noqa: SLF001
    ServerErrorEvent: RealtimeSession._on_server_error,  # noqa: SLF001
    SpeechStarted: RealtimeSession._on_speech,  # noqa: SLF001
    SpeechStopped: RealtimeSession._on_speech,  # noqa: SLF001
    InputCommitted: RealtimeSession._on_committed,  # noqa: SLF001
    InputTranscript: RealtimeSession._on_input_transcript,  # noqa: SLF001
    InputTranscriptDelta: RealtimeSession._on_input_transcript_delta,  # noqa: SLF001
    InputTranscriptFailed: RealtimeSession._on_input_transcript_failed,  # noqa: SLF001
}
