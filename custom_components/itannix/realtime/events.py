"""Realtime event names (beta and GA aliases) and typed parsers.

The vendor's clients use the OpenAI Realtime beta names; the GA API renamed several
events. Each constant is the set of every name an event may arrive under.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

type Event = dict[str, Any]

# Server events.
ERROR: Final = frozenset({"error"})
SESSION_CREATED: Final = frozenset({"session.created"})
SESSION_UPDATED: Final = frozenset({"session.updated"})
RESPONSE_CREATED: Final = frozenset({"response.created"})
RESPONSE_DONE: Final = frozenset({"response.done"})
OUTPUT_ITEM_ADDED: Final = frozenset({"response.output_item.added"})
OUTPUT_ITEM_DONE: Final = frozenset({"response.output_item.done"})
TEXT_DELTA: Final = frozenset({"response.text.delta", "response.output_text.delta"})
TEXT_DONE: Final = frozenset({"response.text.done", "response.output_text.done"})
AUDIO_TRANSCRIPT_DELTA: Final = frozenset(
    {"response.audio_transcript.delta", "response.output_audio_transcript.delta"}
)
AUDIO_TRANSCRIPT_DONE: Final = frozenset(
    {"response.audio_transcript.done", "response.output_audio_transcript.done"}
)
AUDIO_DONE: Final = frozenset({"response.audio.done", "response.output_audio.done"})
FUNCTION_CALL_ARGUMENTS_DELTA: Final = frozenset(
    {"response.function_call_arguments.delta"}
)
FUNCTION_CALL_ARGUMENTS_DONE: Final = frozenset(
    {"response.function_call_arguments.done"}
)
INPUT_TRANSCRIPTION_DELTA: Final = frozenset(
    {"conversation.item.input_audio_transcription.delta"}
)
INPUT_TRANSCRIPTION_COMPLETED: Final = frozenset(
    {"conversation.item.input_audio_transcription.completed"}
)
INPUT_TRANSCRIPTION_FAILED: Final = frozenset(
    {"conversation.item.input_audio_transcription.failed"}
)
SPEECH_STARTED: Final = frozenset({"input_audio_buffer.speech_started"})
SPEECH_STOPPED: Final = frozenset({"input_audio_buffer.speech_stopped"})
INPUT_AUDIO_COMMITTED: Final = frozenset({"input_audio_buffer.committed"})
OUTPUT_AUDIO_STARTED: Final = frozenset({"output_audio_buffer.started"})
OUTPUT_AUDIO_STOPPED: Final = frozenset({"output_audio_buffer.stopped"})
OUTPUT_AUDIO_CLEARED: Final = frozenset({"output_audio_buffer.cleared"})

# Client events.
SESSION_UPDATE: Final = "session.update"
CONVERSATION_ITEM_CREATE: Final = "conversation.item.create"
RESPONSE_CREATE: Final = "response.create"
RESPONSE_CANCEL: Final = "response.cancel"
OUTPUT_AUDIO_BUFFER_CLEAR: Final = "output_audio_buffer.clear"
INPUT_AUDIO_BUFFER_CLEAR: Final = "input_audio_buffer.clear"

RESPONSE_STATUS_COMPLETED: Final = "completed"
RESPONSE_STATUS_CANCELLED: Final = "cancelled"
RESPONSE_STATUS_FAILED: Final = "failed"
RESPONSE_STATUS_INCOMPLETE: Final = "incomplete"

# Error codes the library acts on.
ERROR_ACTIVE_RESPONSE: Final = "conversation_already_has_active_response"
ERROR_SESSION_EXPIRED: Final = "session_expired"


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def response_id_of(event: Mapping[str, Any]) -> str | None:
    """Return the id of the response an event belongs to, when it says."""
    rid = event.get("response_id")
    if isinstance(rid, str):
        return rid
    response = event.get("response")
    if isinstance(response, dict):
        return _opt_str(response.get("id"))
    return None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one or more responses."""

    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """Return the sum of two usages."""
        return Usage(
            self.total_tokens + other.total_tokens,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    """``response.created``: the service started a response."""

    response_id: str | None


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A piece of the transcript of the assistant's spoken reply."""

    delta: str
    response_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    """The full transcript of the assistant's spoken reply (one item)."""

    transcript: str
    response_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text reply."""

    delta: str
    response_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDone:
    """The assistant's full text reply (one item)."""

    text: str
    response_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """What the service understood the user said."""

    transcript: str
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A complete function call from the assistant."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """``response.done``: the end of one response."""

    status: str
    usage: Usage | None
    response_id: str | None
    error_message: str | None = None
    function_calls: tuple[FunctionCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerErrorEvent:
    """An ``error`` event on the data channel."""

    type: str
    code: str | None
    message: str
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The service's VAD heard the user start speaking."""

    audio_start_ms: int = 0
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The service's VAD heard the user stop speaking."""

    audio_end_ms: int = 0
    item_id: str | None = None


def parse_usage(value: Any) -> Usage | None:
    """Parse a ``usage`` object."""
    if not isinstance(value, dict):
        return None
    return Usage(
        total_tokens=_int(value.get("total_tokens")),
        input_tokens=_int(value.get("input_tokens")),
        output_tokens=_int(value.get("output_tokens")),
    )


def _function_call_item(item: Any) -> FunctionCall | None:
    """Return the call of a complete ``function_call`` item, else None."""
    if not isinstance(item, dict) or item.get("type") != "function_call":
        return None
    call_id = item.get("call_id")
    name = item.get("name")
    arguments = item.get("arguments")
    if not (isinstance(call_id, str) and call_id):
        return None
    # A call without a name is still a call: it is answered as naming no function.
    return FunctionCall(
        call_id,
        name if isinstance(name, str) else "",
        arguments if isinstance(arguments, str) else "",
    )


def parse_response_done(event: Mapping[str, Any]) -> ResponseDone:
    """Parse ``response.done``."""
    response = event.get("response")
    if not isinstance(response, dict):
        response = {}
    error_message = None
    details = response.get("status_details")
    if isinstance(details, dict):
        error = details.get("error")
        if isinstance(error, dict):
            error_message = _opt_str(error.get("message")) or _opt_str(
                error.get("code")
            )
        else:
            error_message = _opt_str(details.get("reason"))
    output = response.get("output")
    calls = tuple(
        call
        for call in map(_function_call_item, output if isinstance(output, list) else [])
        if call is not None
    )
    return ResponseDone(
        status=_str(response.get("status"), RESPONSE_STATUS_COMPLETED),
        usage=parse_usage(response.get("usage")),
        response_id=_opt_str(response.get("id")),
        error_message=error_message,
        function_calls=calls,
    )


def parse_error(event: Mapping[str, Any]) -> ServerErrorEvent:
    """Parse an ``error`` event."""
    error = event.get("error")
    if not isinstance(error, dict):
        error = {"message": error} if isinstance(error, str) else {}
    return ServerErrorEvent(
        type=_str(error.get("type"), "error"),
        code=_opt_str(error.get("code")),
        message=_str(error.get("message"), "The service reported an error"),
        event_id=_opt_str(error.get("event_id")),
    )


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """``session.created``: the session as configured for the assistant."""

    session: Any


@dataclass(frozen=True, slots=True)
class InputTranscriptDelta:
    """Part of what the service understood the user said."""

    delta: str
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class InputTranscriptFailed:
    """The service could not transcribe the user's input."""

    message: str
    code: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class InputCommitted:
    """The user's audio became a conversation item."""

    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutputAudio:
    """``output_audio_buffer.started`` / ``stopped`` / ``cleared`` (``kind``)."""

    kind: str
    response_id: str | None = None


type ParsedEvent = (
    ResponseCreated
    | TranscriptDelta
    | TranscriptDone
    | TextDelta
    | TextDone
    | InputTranscript
    | InputTranscriptDelta
    | InputTranscriptFailed
    | InputCommitted
    | ResponseDone
    | ServerErrorEvent
    | SpeechStarted
    | SpeechStopped
    | SessionCreated
    | OutputAudio
)


def _transcription_failed(event: Mapping[str, Any]) -> InputTranscriptFailed:
    error = event.get("error")
    if not isinstance(error, dict):
        error = {}
    return InputTranscriptFailed(
        _str(error.get("message"), "The service could not transcribe the speech"),
        _opt_str(error.get("code")),
        _opt_str(event.get("item_id")),
    )


def _item(event: Mapping[str, Any]) -> str | None:
    return _opt_str(event.get("item_id"))


type _Parser = Callable[[Mapping[str, Any]], ParsedEvent]

_PARSERS: Final[tuple[tuple[frozenset[str], _Parser], ...]] = (
    (
        TEXT_DELTA,
        lambda e: TextDelta(_str(e.get("delta")), response_id_of(e), _item(e)),
    ),
    (
        AUDIO_TRANSCRIPT_DELTA,
        lambda e: TranscriptDelta(_str(e.get("delta")), response_id_of(e), _item(e)),
    ),
    (TEXT_DONE, lambda e: TextDone(_str(e.get("text")), response_id_of(e), _item(e))),
    (
        AUDIO_TRANSCRIPT_DONE,
        lambda e: TranscriptDone(
            _str(e.get("transcript")), response_id_of(e), _item(e)
        ),
    ),
    (
        INPUT_TRANSCRIPTION_COMPLETED,
        lambda e: InputTranscript(_str(e.get("transcript")), _item(e)),
    ),
    (
        INPUT_TRANSCRIPTION_DELTA,
        lambda e: InputTranscriptDelta(_str(e.get("delta")), _item(e)),
    ),
    (INPUT_TRANSCRIPTION_FAILED, _transcription_failed),
    (INPUT_AUDIO_COMMITTED, lambda e: InputCommitted(_item(e))),
    (RESPONSE_CREATED, lambda e: ResponseCreated(response_id_of(e))),
    (RESPONSE_DONE, parse_response_done),
    (ERROR, parse_error),
    (
        SPEECH_STARTED,
        lambda e: SpeechStarted(_int(e.get("audio_start_ms")), _item(e)),
    ),
    (
        SPEECH_STOPPED,
        lambda e: SpeechStopped(_int(e.get("audio_end_ms")), _item(e)),
    ),
    (SESSION_CREATED, lambda e: SessionCreated(e.get("session"))),
    (OUTPUT_AUDIO_STARTED, lambda e: OutputAudio("started", response_id_of(e))),
    (OUTPUT_AUDIO_STOPPED, lambda e: OutputAudio("stopped", response_id_of(e))),
    (OUTPUT_AUDIO_CLEARED, lambda e: OutputAudio("cleared", response_id_of(e))),
)
_PARSER_BY_TYPE: Final[dict[str, _Parser]] = {
    name: parser for names, parser in _PARSERS for name in names
}


def parse_event(event: Mapping[str, Any]) -> ParsedEvent | None:
    """Parse the events the library acts on; None for any other event."""
    etype = event.get("type")
    if not isinstance(etype, str) or (parser := _PARSER_BY_TYPE.get(etype)) is None:
        return None
    return parser(event)


@dataclass(slots=True)
class _PendingCall:
    name: str | None = None
    arguments: str | None = None
    item_id: str | None = None


@dataclass(slots=True)
class FunctionCallTracker:
    """Assemble function calls from the events that describe them.

    A call is complete once its call id, name and final arguments are known. The beta
    ``response.function_call_arguments.done`` has no name: the name comes from the
    ``response.output_item.added`` before it, or from ``response.output_item.done`` /
    ``response.done`` after it. Each call is yielded exactly once, by whichever event
    completes it first.
    """

    _pending: dict[str, _PendingCall] = field(default_factory=dict)
    _item_to_call: dict[str, str] = field(default_factory=dict)
    _emitted: set[str] = field(default_factory=set)

    def feed(self, event: Mapping[str, Any]) -> list[FunctionCall]:
        """Digest one event; return the calls it completed (usually none)."""
        etype = event.get("type")
        if etype in OUTPUT_ITEM_ADDED:
            self._note_item(event.get("item"))
            return []
        if etype in FUNCTION_CALL_ARGUMENTS_DONE:
            return self._arguments_done(event)
        if etype in OUTPUT_ITEM_DONE:
            return self._complete_items([event.get("item")])
        if etype in RESPONSE_DONE:
            response = event.get("response")
            output = response.get("output") if isinstance(response, dict) else None
            return self._complete_items(output if isinstance(output, list) else [])
        return []

    def _note_item(self, item: Any) -> None:
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id or call_id in self._emitted:
            return
        pending = self._pending.setdefault(call_id, _PendingCall())
        if isinstance(item.get("name"), str) and item["name"]:
            pending.name = item["name"]
        if isinstance(item.get("id"), str):
            pending.item_id = item["id"]
            self._item_to_call[item["id"]] = call_id

    def _arguments_done(self, event: Mapping[str, Any]) -> list[FunctionCall]:
        call_id = event.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            call_id = self._item_to_call.get(_str(event.get("item_id")))
        if call_id is None or call_id in self._emitted:
            return []
        pending = self._pending.setdefault(call_id, _PendingCall())
        pending.arguments = _str(event.get("arguments"))
        name = event.get("name")
        if isinstance(name, str) and name:
            pending.name = name
        return self._emit_if_complete(call_id)

    def _complete_items(self, items: list[Any]) -> list[FunctionCall]:
        calls: list[FunctionCall] = []
        for item in items:
            if not isinstance(item, dict) or item.get("type") != "function_call":
                continue
            self._note_item(item)
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or call_id not in self._pending:
                continue
            arguments = item.get("arguments")
            if isinstance(arguments, str):
                self._pending[call_id].arguments = arguments
            elif self._pending[call_id].arguments is None:
                self._pending[call_id].arguments = ""
            # The item is final: a call that still has no name gets none (it is
            # answered as naming no function, never left waiting for an output).
            if self._pending[call_id].name is None:
                self._pending[call_id].name = ""
            calls.extend(self._emit_if_complete(call_id))
        return calls

    def _emit_if_complete(self, call_id: str) -> list[FunctionCall]:
        pending = self._pending[call_id]
        if pending.name is None or pending.arguments is None:
            return []
        del self._pending[call_id]
        if pending.item_id is not None:
            self._item_to_call.pop(pending.item_id, None)
        self._emitted.add(call_id)
        return [FunctionCall(call_id, pending.name, pending.arguments)]

    def __iter__(self) -> Iterator[str]:
        """Iterate over the ids of calls seen but not yet complete."""
        return iter(list(self._pending))
