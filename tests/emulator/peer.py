"""One emulated realtime session: the aiortc answerer and the event protocol on it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import json
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, ClassVar

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)

from tests.network import NetworkProfile, UdpRelay, relay_answer, without_candidates

from .behaviour import Behaviour
from .brain import (
    DEFAULT_AFTER_TOOLS_REPLY,
    FunctionCallSpec,
    ScriptedBrain,
    Turn,
    new_call_id,
)
from .vad import EnergyVad, drain
from .voice import Playback, SpeakerTrack, Synthesizer

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from aiortc.mediastreams import MediaStreamTrack

    from .faults import Faults

_LOGGER = logging.getLogger(__name__)

DEFAULT_MODALITIES = ["text", "audio"]
_ARGUMENT_CHUNK = 8

# How long generating a spoken reply takes, as a share of its playing time (capped):
# the service streams audio in real time but produces it faster.
GENERATION_SHARE = 0.3
MAX_GENERATION_SECONDS = 1.5

# What the assistant says instead of calling a function the session does not have.
REFUSAL = "I cannot do that."
# The delta the late_delta_after_done fault sends after a response.done.
LATE_DELTA = " [late delta]"
# expire() with no max_session_duration set: OpenAI's cap after general availability.
DEFAULT_SESSION_CAP = 3600.0
# Rate limits rate_limits.updated reports (per session, as a window that resets).
REQUESTS_LIMIT = 5000
TOKENS_LIMIT = 40000
_RATE_WINDOW = 60.0
# How often a session looks at behaviour.max_session_duration.
_LIFETIME_POLL = 0.5

_DEFAULT_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.4,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
}

TRANSCRIPTION_DELTA = "conversation.item.input_audio_transcription.delta"
TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed"
TRANSCRIPTION_FAILED = "conversation.item.input_audio_transcription.failed"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _word_deltas(text: str) -> list[str]:
    """Split ``text`` into word deltas whose concatenation is ``text``."""
    return re.findall(r"\s*\S+", text) or [text]


def _first_half(text: str) -> str:
    """The first half of ``text``'s words (what a response cut short says)."""
    words = re.findall(r"\s*\S+", text)
    return "".join(words[: len(words) // 2]).strip()


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return str(round(minutes)) if minutes == round(minutes) else f"{minutes:.2f}"


def offer_has_audio(sdp: str) -> bool:
    """Return True when the offer has an audio m-line that is not rejected (port 0)."""
    for line in sdp.splitlines():
        if line.startswith("m=audio "):
            parts = line.split()
            if len(parts) > 1 and parts[1] != "0":
                return True
    return False


class _ChannelDroppedError(Exception):
    """The drop_channel_mid_reply fault fired: the reply goes no further."""


class _CancelledResponseError(Exception):
    """The response was cancelled (response.cancel, a clear or a barge-in)."""


@dataclass
class _ResponsePlan:
    """What one response will say and call."""

    reply: str
    function_calls: list[FunctionCallSpec] = field(default_factory=list)
    reply_after_tools: str | None = None
    modalities: list[str] = field(default_factory=lambda: list(DEFAULT_MODALITIES))
    input_text: str = ""
    status: str = "completed"
    status_details: dict[str, Any] | None = None


class _Response:
    """One response: its plan, and where its generation has got to."""

    def __init__(self, plan: _ResponsePlan, record: dict[str, Any]) -> None:
        self.id: str = record["id"]
        self.plan = plan
        self.record = record
        self.task: asyncio.Task[None] | None = None
        self.announced = False  # response.created went out
        self.spoken = False
        self.cancel_reason: str | None = None
        self.cancelled: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        # response.done went out (or the response ended without one).
        self.finished = asyncio.Event()
        self.output: list[dict[str, Any]] = []
        # Delta events of the item being generated that have not gone out yet.
        self.pending: list[dict[str, Any]] = []
        # The reply item being generated, and its text so far.
        self.reply_item: dict[str, Any] | None = None
        self.reply_text = ""
        # The complete function_call item whose arguments are being streamed.
        self.streaming_call: dict[str, Any] | None = None
        # Where a late delta of this response goes (the last reply item's ids).
        self.delta_where: dict[str, Any] | None = None

    def cancel(self, reason: str) -> bool:
        """Ask the generation to stop; False when it was asked already."""
        if self.cancel_reason is not None:
            return False
        self.cancel_reason = reason
        if not self.cancelled.done():
            self.cancelled.set_result(None)
        return True


@dataclass
class _AudioInput:
    """A committed audio item and the response made for it (if any yet)."""

    item_id: str
    turn: Turn
    response: _Response | None = None


class EmulatedSession:
    """A realtime session as the service sees it, and what it received."""

    def __init__(
        self,
        *,
        client_id: str,
        headers: dict[str, str],
        app_source: str | None,
        assistant_id: str | None,
        modalities: list[str],
        brain: ScriptedBrain,
        synthesizer: Synthesizer,
        faults: Faults,
        ga_names: bool = False,
        network: NetworkProfile | None = None,
        behaviour: Callable[[], Behaviour] | None = None,
    ) -> None:
        """Create the session (the peer comes with the SDP offer).

        With a ``network``, the peer's media path goes through a relay that applies
        it (delay, jitter, loss) and that ``cut_network()`` cuts. ``behaviour``
        returns the emulator's current protocol behaviour (read when needed).
        """
        self.id = _new_id("sess")
        self.client_id = client_id
        self.headers = headers
        self.app_source = app_source
        self.assistant_id = assistant_id
        self.modalities = list(modalities)
        self.received_events: list[dict[str, Any]] = []
        self.sent_events: list[dict[str, Any]] = []
        # time.monotonic() of each sent event, for latency benchmarks in this process.
        self.sent_times: list[float] = []
        self.function_outputs: dict[str, str] = {}
        self.input_transcription_enabled = False
        self.speech_started_count = 0
        self.channel_label: str | None = None
        self.closed = False
        # The session's current tools and instructions (the dashboard's from
        # session.created on; session.update replaces them).
        self.tools: list[dict[str, Any]] = []
        self.instructions = ""
        # Names of scripted calls not made: the session had no such tool.
        self.refused_calls: list[str] = []
        # One record per response: id, status, status_details, input, calls, and
        # cancelled_at (len(sent_events) when its cancel arrived, else None).
        self.responses: list[dict[str, Any]] = []
        self.expired = False
        self._expire_task: asyncio.Task[None] | None = None
        self._brain = brain
        self._synth = synthesizer
        self._faults = faults
        self._ga = ga_names
        self._behaviour: Callable[[], Behaviour] = behaviour or Behaviour
        self._config: dict[str, Any] = {}
        self._transcription: dict[str, Any] | None = None
        # The client's turn_detection (missing: the service's; None: VAD off).
        self._turn_detection: dict[str, Any] | None = None
        self._turn_detection_set = False
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._opened_at: float | None = None
        self._created = False
        self._deferred: list[Callable[[], None]] = []
        self._speaker: SpeakerTrack | None = None
        self._vad = EnergyVad(self._on_speech_started, self._on_speech_stopped)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self._active: _Response | None = None
        self._queued: deque[_Response] = deque()
        # Input not yet answered: typed text, and audio committed without a response.
        self._pending_inputs: list[str | _AudioInput] = []
        self._awaiting_calls: dict[str, str] = {}  # call_id -> function name
        self._reply_after_tools: str | None = None
        self._audio_item_id: str | None = None
        self._last_item_id: str | None = None
        self._playing_response_id: str | None = None
        self._dropping_channel = False
        self._network = network
        self._relays: list[UdpRelay] = []
        self._requests_used = 0
        self._tokens_used = 0

    # -- What tests read ---------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        """The protocol behaviour in force now."""
        return self._behaviour()

    @property
    def has_peer(self) -> bool:
        """Return True once an SDP offer was answered for this session."""
        return self._pc is not None

    @property
    def inbound_peak_rms(self) -> int:
        """Loudest inbound frame so far (int16 RMS)."""
        return round(self._vad.peak_rms)

    @property
    def inbound_voiced_ms(self) -> int:
        """Milliseconds of inbound audio above the VAD threshold."""
        return round(self._vad.voiced_ms)

    @property
    def sends_audio(self) -> bool:
        """Return True when the client receives our audio track (RTP flows to it)."""
        return self._pc is not None and any(
            t.sender.track is self._speaker
            and t.currentDirection in {"sendonly", "sendrecv"}
            for t in self._pc.getTransceivers()
        )

    @property
    def relays(self) -> tuple[UdpRelay, ...]:
        """The relays the session's media path goes through (none without a network)."""
        return tuple(self._relays)

    def cut_network(self) -> None:
        """The network to the client vanishes; neither side is told (needs a network)."""
        assert self._relays, "the emulator's network profile was not set"
        for relay in self._relays:
            relay.cut()

    @property
    def response_active(self) -> bool:
        """Return True while a response is being produced."""
        return self._active is not None

    @property
    def created(self) -> bool:
        """Return True once session.created went out."""
        return self._created

    # -- Signalling --------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Answer the client's offer; raises ValueError for an offer aiortc rejects."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        relayed = self._network is not None or self._faults.media_blocked
        if relayed:
            # Else the far end would check the client's own candidates directly, and
            # the media could pass beside the relay (and beside its profile).
            offer_sdp = without_candidates(offer_sdp)
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=offer_sdp, type="offer")
            )
            self._speaker = SpeakerTrack()
            pc.addTrack(self._speaker)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as err:
            await self.close()
            raise ValueError(f"Invalid SDP offer: {err}") from err
        if not self.sends_audio:
            # The client does not receive audio: pull the track ourselves so replies
            # still take as long as they would to play.
            self._spawn(self._pull_own_speaker())
        if not relayed:
            return pc.localDescription.sdp
        sdp, self._relays = await relay_answer(
            pc.localDescription.sdp, self._network or NetworkProfile()
        )
        if self._faults.media_blocked:
            self.cut_network()
        return sdp

    async def _pull_own_speaker(self) -> None:
        assert self._speaker is not None
        while self._speaker.readyState == "live":
            await self._speaker.recv()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(drain(track, self._vad))

    def _on_connection_state(self) -> None:
        if self._pc is not None and self._pc.connectionState in {"failed", "closed"}:
            self._request_close()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            return
        self._channel = channel
        self.channel_label = channel.label
        self._opened_at = time.monotonic()
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        if self._faults.close_peer_after_open:
            self._request_close()
            return
        self._spawn(self._lifetime())
        delay = self.behaviour.session_created_delay
        if delay > 0:
            self._spawn(self._announce_session(delay))
        else:
            self._announce_session_now()

    def _on_channel_close(self) -> None:
        # The client hanging up its channel ends the session; our own fault does not.
        if not self._dropping_channel:
            self._request_close()

    async def _announce_session(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._announce_session_now()

    def _announce_session_now(self) -> None:
        """Send session.created, then handle what arrived before it, in order."""
        behaviour = self.behaviour
        tools: list[dict[str, Any]] = []
        names: set[Any] = set()
        for tool in [*behaviour.tools, *self._brain.tools]:
            if tool.get("name") not in names:
                names.add(tool.get("name"))
                tools.append(dict(tool))
        self.tools = tools
        self.instructions = behaviour.instructions
        self._send({"type": "session.created", "session": self._session_object()})
        self._created = True
        deferred, self._deferred = self._deferred, []
        for action in deferred:
            action()

    def _when_created(self, action: Callable[[], None]) -> None:
        """Run ``action`` now, or right after session.created when it is not out yet."""
        if self._created:
            action()
        else:
            self._deferred.append(action)

    async def _lifetime(self) -> None:
        """Expire the session at behaviour.max_session_duration (read as it goes)."""
        assert self._opened_at is not None
        while True:
            limit = self.behaviour.max_session_duration
            if limit is None:
                await asyncio.sleep(_LIFETIME_POLL)
                continue
            remaining = self._opened_at + limit - time.monotonic()
            if remaining <= 0:
                self.expire()  # closing cancels this task: do not wait here
                return
            await asyncio.sleep(min(remaining, _LIFETIME_POLL))

    def expire(self) -> asyncio.Task[None]:
        """End the session as the service does at its maximum duration.

        Sends ``error`` code ``session_expired`` now, then closes the peer; returns
        the task doing that (await it to wait for the close).
        """
        if self._expire_task is None:
            self.expired = True
            limit = self.behaviour.max_session_duration
            minutes = _minutes(DEFAULT_SESSION_CAP if limit is None else limit)
            self._send(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "session_expired",
                        "message": (
                            "Your session hit the maximum duration of "
                            f"{minutes} minutes."
                        ),
                        "param": None,
                        "event_id": None,
                    },
                }
            )
            # Not one of the session's tasks: closing cancels those.
            self._expire_task = asyncio.get_running_loop().create_task(
                self._close_expired()
            )
        return self._expire_task

    async def _close_expired(self) -> None:
        await self._flush_channel()
        await self.close()

    async def _flush_channel(self) -> None:
        """Let what was sent reach the client before the peer closes."""
        channel = self._channel
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while channel is not None and channel.bufferedAmount > 0:
                    await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)

    # -- Lifecycle ---------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            _LOGGER.error("Emulated session task failed", exc_info=err)

    def _request_close(self) -> None:
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close())

    async def close(self) -> None:
        """Close the peer and cancel every task of this session (idempotent)."""
        self._request_close()
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self.closed = True
        self._queued.clear()
        self._deferred.clear()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if self._speaker is not None:
            self._speaker.stop()
        if self._pc is not None:
            await self._pc.close()
            await _connecting_ended(self._pc)
        for relay in self._relays:
            relay.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- Sending -----------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> bool:
        """Send a server event; False when the channel is gone."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return False
        dtls = self._pc.sctp.transport if self._pc and self._pc.sctp else None
        if dtls is not None and dtls.state != "connected":
            # The network is gone (the peer has not noticed yet): aiortc would fail
            # in a task nobody awaits. A real service drops the message too.
            return False
        event = {"event_id": _new_id("event"), **event}
        channel.send(json.dumps(event))
        self.sent_events.append(event)
        self.sent_times.append(time.monotonic())
        return True

    def _send_output_audio(self, kind: str, response_id: str | None) -> None:
        """``output_audio_buffer.<kind>``, unless the behaviour leaves it out."""
        behaviour = self.behaviour
        if not behaviour.output_audio_buffer_events or (
            kind == "stopped" and not behaviour.output_audio_buffer_stopped
        ):
            return
        self._send({"type": f"output_audio_buffer.{kind}", "response_id": response_id})

    def _send_error(
        self, code: str, message: str, client_event: dict[str, Any] | None = None
    ) -> None:
        self._send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": code,
                    "message": message,
                    "param": None,
                    "event_id": (client_event or {}).get("event_id"),
                },
            }
        )

    def _name(self, beta: str, ga: str) -> str:
        return ga if self._ga else beta

    # -- Receiving ---------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (ValueError, RecursionError):
            self._when_created(
                lambda: self._send_error("invalid_json", "The event is not valid JSON.")
            )
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._when_created(
                lambda: self._send_error(
                    "invalid_event", "An event is a JSON object with a type."
                )
            )
            return
        self.received_events.append(event)
        self._when_created(lambda: self._handle(event))

    def _handle(self, event: dict[str, Any]) -> None:
        handler = self._handlers.get(event["type"])
        if handler is None:
            self._send_error(
                "unknown_event_type", f"Unknown event type: {event['type']!r}", event
            )
            return
        try:
            handler(self, event)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            # Wrong types where the handler expected others: an error, not a crash.
            _LOGGER.warning("Bad %s event: %r", event["type"], err)
            self._send_error("invalid_value", f"Invalid {event['type']} event", event)

    def _on_session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            self._send_error("invalid_value", "session must be an object", event)
            return
        tools = session.get("tools", [])
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            self._send_error("invalid_value", "tools must be a list of objects", event)
            return
        # A field that is present replaces its old value whole; the rest stay.
        if "tools" in session:
            self.tools = [dict(t) for t in tools]
        if isinstance(session.get("instructions"), str):
            self.instructions = session["instructions"]
        audio_input = (session.get("audio") or {}).get("input") or {}
        for holder in (session, audio_input):
            if "turn_detection" in holder:
                detection = holder["turn_detection"]
                self._turn_detection = (
                    dict(detection) if isinstance(detection, dict) else None
                )
                self._turn_detection_set = True
        self._config.update(
            {
                k: v
                for k, v in session.items()
                if k not in {"tools", "instructions", "turn_detection"}
            }
        )
        if "input_audio_transcription" in session:
            self._transcription = session["input_audio_transcription"]
        if "transcription" in audio_input:
            self._transcription = audio_input["transcription"]
        self.input_transcription_enabled = self._transcription is not None
        for key in ("modalities", "output_modalities"):
            if isinstance(session.get(key), list):
                self.modalities = list(session[key])
        self._send({"type": "session.updated", "session": self._session_object()})

    def _on_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            self._send_error("invalid_value", "item must be an object", event)
            return
        kind = item.get("type")
        if kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or output is None:
                self._send_error(
                    "invalid_value",
                    "function_call_output needs call_id and output",
                    event,
                )
                return
            self.function_outputs[call_id] = (
                output if isinstance(output, str) else json.dumps(output)
            )
        elif kind == "message":
            text = "".join(
                part.get("text", "")
                for part in item.get("content") or []
                if isinstance(part, dict) and part.get("type") in {"input_text", "text"}
            )
            if item.get("role", "user") == "user" and text:
                self._pending_inputs.append(text)
        else:
            self._send_error("invalid_value", f"Unsupported item type: {kind!r}", event)
            return
        item = {
            "id": item.get("id") or _new_id("item"),
            "object": "realtime.item",
            **item,
        }
        self._send(
            {
                "type": "conversation.item.created",
                "previous_item_id": self._last_item_id,
                "item": item,
            }
        )
        self._last_item_id = item["id"]

    def _on_item_truncate(self, event: dict[str, Any]) -> None:
        self._send(
            {
                "type": "conversation.item.truncated",
                "item_id": event.get("item_id"),
                "content_index": event.get("content_index", 0),
                "audio_end_ms": event.get("audio_end_ms", 0),
            }
        )

    def _on_item_delete(self, event: dict[str, Any]) -> None:
        self._send(
            {"type": "conversation.item.deleted", "item_id": event.get("item_id")}
        )

    def _on_response_create(self, event: dict[str, Any]) -> None:
        if self._active is not None:
            self._send_error(
                "conversation_already_has_active_response",
                "A response is already in progress.",
                event,
            )
            return
        options = event.get("response") or {}
        modalities = list(
            options.get("modalities")
            or options.get("output_modalities")
            or self.modalities
        )
        if self._awaiting_calls:
            missing = [
                c for c in self._awaiting_calls if c not in self.function_outputs
            ]
            if missing:
                self._send_error(
                    "missing_function_call_output",
                    "No function_call_output for call_id(s): " + ", ".join(missing),
                    event,
                )
                return
            reply = self._reply_after_tools or DEFAULT_AFTER_TOOLS_REPLY
            for call_id, name in self._awaiting_calls.items():
                reply = reply.replace("{" + name + "}", self.function_outputs[call_id])
            self._awaiting_calls = {}
            self._reply_after_tools = None
            self._enqueue(
                self._new_response(_ResponsePlan(reply=reply, modalities=modalities))
            )
            return
        inputs, self._pending_inputs = self._pending_inputs, []
        audio = [i for i in inputs if isinstance(i, _AudioInput)]
        if inputs and isinstance(inputs[-1], str):
            text = "\n".join(i for i in inputs if isinstance(i, str))
            turn = self._brain.next_text_turn(text)
        elif audio:
            turn = audio[-1].turn
            text = turn.transcript or ""
        else:
            text, turn = "", self._brain.next_audio_turn()
        response = self._new_response(self._plan(turn, modalities, text))
        for item in audio:
            item.response = response
        self._enqueue(response)

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        response = self._active
        wanted = event.get("response_id")
        if response is None or (wanted and wanted != response.id):
            self._send_error(
                "response_cancel_not_active", "There is no active response.", event
            )
            return
        self._cancel(response, "client_cancelled")

    def _on_output_audio_clear(self, _event: dict[str, Any]) -> None:
        response = self._active
        response_id = self._playing_response_id or (response and response.id)
        if response is not None:
            self._cancel(response, "client_cancelled")
        if self._speaker is not None:
            self._speaker.clear()
        self._send_output_audio("cleared", response_id)

    def _on_input_audio_clear(self, _event: dict[str, Any]) -> None:
        # Like the service: the uncommitted audio is gone, an utterance in progress too.
        self._vad.reset()
        self._audio_item_id = None
        self._send({"type": "input_audio_buffer.cleared"})

    def _on_input_audio_commit(self, _event: dict[str, Any]) -> None:
        item_id = self._audio_item_id or _new_id("item")
        self._audio_item_id = None
        self._vad.reset()
        self._commit_audio(item_id, by_vad=False)

    _handlers: ClassVar[dict[str, Any]] = {
        "session.update": _on_session_update,
        "conversation.item.create": _on_item_create,
        "conversation.item.truncate": _on_item_truncate,
        "conversation.item.delete": _on_item_delete,
        "response.create": _on_response_create,
        "response.cancel": _on_response_cancel,
        "output_audio_buffer.clear": _on_output_audio_clear,
        "input_audio_buffer.clear": _on_input_audio_clear,
        "input_audio_buffer.commit": _on_input_audio_commit,
    }

    # -- Server VAD --------------------------------------------------------------

    def _vad_setting(self, key: str) -> bool:
        """A turn_detection flag: the client's when it set one, the service's else."""
        if self._turn_detection is not None and key in self._turn_detection:
            return bool(self._turn_detection[key])
        return bool(getattr(self.behaviour, key))

    @property
    def _server_vad(self) -> bool:
        return not (self._turn_detection_set and self._turn_detection is None)

    def _on_speech_started(self, position_ms: float) -> None:
        self._when_created(lambda: self._speech_started(position_ms))

    def _on_speech_stopped(self, position_ms: float) -> None:
        self._when_created(lambda: self._speech_stopped(position_ms))

    def _speech_started(self, position_ms: float) -> None:
        if not self._server_vad or self.closed:
            return
        self.speech_started_count += 1
        self._audio_item_id = _new_id("item")
        self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": round(position_ms),
                "item_id": self._audio_item_id,
            }
        )
        if self._vad_setting("interrupt_response"):
            self._barge_in()

    def _barge_in(self) -> None:
        """Speech during a response: cancel it and silence its audio."""
        response = self._active
        playing = self._playing_response_id
        dropped = self._speaker.clear() if self._speaker is not None else False
        cancelled = response is not None and self._cancel(response, "turn_detected")
        if dropped or playing is not None or (cancelled and response.spoken):
            self._send_output_audio("cleared", playing or (response and response.id))

    def _speech_stopped(self, position_ms: float) -> None:
        if not self._server_vad or self.closed:
            return
        item_id = self._audio_item_id or _new_id("item")
        self._audio_item_id = None
        self._send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": round(position_ms),
                "item_id": item_id,
            }
        )
        self._commit_audio(item_id, by_vad=True)

    def _commit_audio(self, item_id: str, *, by_vad: bool) -> None:
        """The input audio becomes a user item; server VAD may answer it."""
        self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self._last_item_id,
                "item_id": item_id,
            }
        )
        self._send(
            {
                "type": "conversation.item.created",
                "previous_item_id": self._last_item_id,
                "item": {
                    "id": item_id,
                    "object": "realtime.item",
                    "type": "message",
                    "role": "user",
                    "status": "completed",
                    "content": [{"type": "input_audio", "transcript": None}],
                },
            }
        )
        self._last_item_id = item_id
        audio = _AudioInput(item_id, self._brain.next_audio_turn())
        if by_vad and self._vad_setting("create_response"):
            audio.response = self._new_response(
                self._plan(audio.turn, self.modalities, audio.turn.transcript or "")
            )
            self._transcribe(audio)
            # Server VAD never runs two responses at once: this one may wait its turn.
            self._enqueue(audio.response)
        else:
            self._pending_inputs.append(audio)
            self._transcribe(audio)

    # -- Input transcription -------------------------------------------------------

    def _transcribe(self, audio: _AudioInput) -> None:
        if not self.input_transcription_enabled:
            return
        behaviour = self.behaviour
        if (
            behaviour.transcription_delay <= 0
            and not behaviour.transcription_after_response
        ):
            self._send_transcription(audio)
        else:
            self._spawn(self._transcribe_later(audio))

    async def _transcribe_later(self, audio: _AudioInput) -> None:
        """The separate ASR model: later, and maybe after the response it fed."""
        behaviour = self.behaviour
        delay = behaviour.transcription_delay
        if behaviour.transcription_after_response and audio.response is None:
            # No response for it yet; one may come (response.create) meanwhile.
            await asyncio.sleep(delay)
            if audio.response is None:
                self._send_transcription(audio)
                return
        if behaviour.transcription_after_response:
            assert audio.response is not None
            await audio.response.finished.wait()
        await asyncio.sleep(delay)
        self._send_transcription(audio)

    def _send_transcription(self, audio: _AudioInput) -> None:
        turn = audio.turn
        where = {"item_id": audio.item_id, "content_index": 0}
        if turn.transcription_error is not None:
            self._send(
                {
                    "type": TRANSCRIPTION_FAILED,
                    **where,
                    "error": {
                        "type": "transcription_error",
                        "code": "audio_unintelligible",
                        "message": turn.transcription_error,
                    },
                }
            )
            return
        transcript = turn.transcript or ""
        if self.behaviour.transcription_deltas and transcript:
            for delta in _word_deltas(transcript):
                self._send({"type": TRANSCRIPTION_DELTA, **where, "delta": delta})
        self._send({"type": TRANSCRIPTION_COMPLETED, **where, "transcript": transcript})

    # -- Responses ---------------------------------------------------------------

    @staticmethod
    def _plan(turn: Turn, modalities: list[str], text: str) -> _ResponsePlan:
        return _ResponsePlan(
            reply=turn.reply,
            function_calls=list(turn.function_calls),
            reply_after_tools=turn.reply_after_tools,
            modalities=list(modalities),
            input_text=text,
            status=turn.status,
            status_details=turn.status_details,
        )

    def _new_response(self, plan: _ResponsePlan) -> _Response:
        record: dict[str, Any] = {
            "id": _new_id("resp"),
            "status": "in_progress",
            "status_details": None,
            "input": plan.input_text,
            "calls": [],
            "cancelled_at": None,
        }
        self.responses.append(record)
        return _Response(plan, record)

    def _enqueue(self, response: _Response) -> None:
        if self._active is None:
            self._start_response(response)
        else:
            self._queued.append(response)

    def _start_response(self, response: _Response) -> None:
        self._active = response
        response.task = self._spawn(self._run_response(response))

    def _start_queued_response(self) -> None:
        if not self.closed and self._active is None and self._queued:
            self._start_response(self._queued.popleft())

    def _cancel(self, response: _Response, reason: str) -> bool:
        """Cancel ``response``: its generation stops after what is in flight."""
        if not response.cancel(reason):
            return False
        response.record["cancelled_at"] = len(self.sent_events)
        return True

    async def _pace(self, response: _Response, seconds: float) -> None:
        """Generation time; raise _CancelledResponseError once it was cancelled."""
        if response.cancel_reason is None:
            if seconds > 0:
                await asyncio.wait({response.cancelled}, timeout=seconds)
            else:
                await asyncio.sleep(0)
        if response.cancel_reason is not None:
            raise _CancelledResponseError

    async def _run_response(self, response: _Response) -> None:
        plan = response.plan
        behaviour = self.behaviour
        try:
            if behaviour.think_time > 0 or response.cancel_reason is not None:
                await self._pace(response, behaviour.think_time)
            self._announce_response(response)
            reply, calls = self._callable(plan)
            status = plan.status
            if status in {"failed", "incomplete"}:
                # Cut short: half the reply, no calls.
                reply, calls = _first_half(reply), []
            if reply:
                await self._reply_item(response, reply, status)
            for spec in calls:
                await self._call_item(response, spec)
        except _CancelledResponseError:
            self._end_cancelled(response)
            self._start_queued_response()
            return
        except _ChannelDroppedError:
            self._active = None
            response.record["status"] = None
            response.finished.set()
            return
        if status == "completed":
            self._awaiting_calls = {
                item["call_id"]: item["name"]
                for item in response.output
                if item["type"] == "function_call"
            }
            self._reply_after_tools = plan.reply_after_tools
        self._finish_response(response, status, self._status_details(plan))
        self._start_queued_response()

    @staticmethod
    def _status_details(plan: _ResponsePlan) -> dict[str, Any] | None:
        if plan.status_details is not None:
            return plan.status_details
        if plan.status == "failed":
            return {
                "type": "failed",
                "error": {
                    "type": "server_error",
                    "code": "server_error",
                    "message": "The server had an error while processing your "
                    "request. Please retry.",
                },
            }
        if plan.status == "incomplete":
            return {"type": "incomplete", "reason": "max_output_tokens"}
        return None

    def _callable(self, plan: _ResponsePlan) -> tuple[str, list[FunctionCallSpec]]:
        """The reply and calls the model can make with the session's current tools."""
        if not plan.function_calls or not self.behaviour.known_tools_only:
            return plan.reply, list(plan.function_calls)
        known = {tool.get("name") for tool in self.tools}
        calls = [spec for spec in plan.function_calls if spec.name in known]
        refused = [spec.name for spec in plan.function_calls if spec.name not in known]
        if not refused:
            return plan.reply, calls
        self.refused_calls.extend(refused)
        return REFUSAL, calls

    def _response_object(self, response: _Response, status: str) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": None,
            "output": [],
            "modalities": response.plan.modalities,
            "usage": None,
        }

    def _announce_response(self, response: _Response) -> None:
        if not response.announced:
            response.announced = True
            self._send(
                {
                    "type": "response.created",
                    "response": self._response_object(response, "in_progress"),
                }
            )

    def _end_cancelled(self, response: _Response) -> None:
        """What a cancel leaves: events in flight, then response.done (cancelled)."""
        self._announce_response(response)
        in_flight = response.pending[: max(0, self.behaviour.cancel_latency)]
        response.pending = []
        for event in in_flight:
            self._send_response_delta(response, event)
        if (item := response.reply_item) is not None:
            part_key = "transcript" if response.spoken else "text"
            response.output.append(
                {
                    **item,
                    "status": "incomplete",
                    "content": [
                        {
                            "type": "audio" if response.spoken else "text",
                            part_key: response.reply_text,
                        }
                    ],
                }
            )
            response.reply_item = None
        if (call := response.streaming_call) is not None:
            # The call was being streamed: its item still comes, complete.
            self._send(
                {
                    "type": "response.output_item.done",
                    "response_id": response.id,
                    "output_index": len(response.output),
                    "item": call,
                }
            )
            response.output.append(call)
            response.record["calls"].append(call["name"])
            response.streaming_call = None
        self._finish_response(
            response,
            "cancelled",
            {"type": "cancelled", "reason": response.cancel_reason},
        )

    def _finish_response(
        self,
        response: _Response,
        status: str,
        status_details: dict[str, Any] | None,
    ) -> None:
        if self._active is response:
            self._active = None
        plan = response.plan
        input_tokens = len(plan.input_text.split())
        output_tokens = sum(
            len(self._item_text(item).split())
            if item["type"] == "message"
            else len(item.get("arguments", "")) // 4 + 1
            for item in response.output
        )
        usage = {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        done = {
            **self._response_object(response, status),
            "status_details": status_details,
            "output": response.output,
            "usage": usage,
        }
        response.record.update(status=status, status_details=status_details)
        self._send({"type": "response.done", "response": done})
        if self._faults.repeat_response_done:
            self._send(
                {"type": "response.done", "response": json.loads(json.dumps(done))}
            )
        if self._faults.late_delta_after_done:
            self._send_late_delta(response)
        response.finished.set()
        self._requests_used += 1
        self._tokens_used += usage["total_tokens"]
        if self.behaviour.rate_limits:
            self._send_rate_limits()

    @staticmethod
    def _item_text(item: dict[str, Any]) -> str:
        return " ".join(
            str(part.get("text") or part.get("transcript") or "")
            for part in item.get("content") or []
        )

    def _send_late_delta(self, response: _Response) -> None:
        where = response.delta_where or {
            "response_id": response.id,
            "item_id": _new_id("item"),
            "output_index": 0,
        }
        name = (
            self._name(
                "response.audio_transcript.delta",
                "response.output_audio_transcript.delta",
            )
            if response.spoken
            else self._name("response.text.delta", "response.output_text.delta")
        )
        self._send({"type": name, **where, "content_index": 0, "delta": LATE_DELTA})

    def _send_rate_limits(self) -> None:
        requests_left = max(0, REQUESTS_LIMIT - self._requests_used)
        tokens_left = max(0, TOKENS_LIMIT - self._tokens_used)
        self._send(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {
                        "name": "requests",
                        "limit": REQUESTS_LIMIT,
                        "remaining": requests_left,
                        "reset_seconds": round(
                            _RATE_WINDOW * self._requests_used / REQUESTS_LIMIT, 3
                        ),
                    },
                    {
                        "name": "tokens",
                        "limit": TOKENS_LIMIT,
                        "remaining": tokens_left,
                        "reset_seconds": round(
                            _RATE_WINDOW * self._tokens_used / TOKENS_LIMIT, 3
                        ),
                    },
                ],
            }
        )

    def _send_response_delta(self, response: _Response, event: dict[str, Any]) -> None:
        """Send one delta of ``response``, keeping the reply text so far."""
        self._send(event)
        if response.reply_item is not None and event["type"] in {
            "response.text.delta",
            "response.output_text.delta",
            "response.audio_transcript.delta",
            "response.output_audio_transcript.delta",
        }:
            response.reply_text += event["delta"]

    async def _stream(self, response: _Response, events: list[dict[str, Any]]) -> None:
        """Send delta events at generation speed; a cancel stops the rest."""
        response.pending = list(events)
        first = True
        while response.pending:
            event = response.pending.pop(0)
            self._send_response_delta(response, event)
            if first and self._faults.drop_channel_mid_reply and self._channel:
                self._dropping_channel = True
                self._channel.close()
                raise _ChannelDroppedError
            first = False
            await self._pace(response, self.behaviour.delta_interval)

    async def _reply_item(self, response: _Response, text: str, status: str) -> None:
        """Generate the reply (spoken or text); ``status`` may cut it short."""
        response_id = response.id
        index = len(response.output)
        item_id = _new_id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        where = {"response_id": response_id, "item_id": item_id, "output_index": index}
        self._send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": index,
                "item": dict(item),
            }
        )
        spoken = "audio" in response.plan.modalities and self._speaker is not None
        response.spoken = spoken
        response.reply_item = item
        response.reply_text = ""
        response.delta_where = where
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""}
            if spoken
            else {"type": "text", "text": ""}
        )
        self._send(
            {
                "type": "response.content_part.added",
                **where,
                "content_index": 0,
                "part": part,
            }
        )
        finished = status != "failed"
        if spoken:
            await self._speak(response, where, text, finished)
            part = {"type": "audio", "transcript": text}
        else:
            name = self._name("response.text.delta", "response.output_text.delta")
            await self._stream(
                response,
                [
                    {"type": name, **where, "content_index": 0, "delta": delta}
                    for delta in _word_deltas(text)
                ],
            )
            if finished:
                self._send(
                    {
                        "type": self._name(
                            "response.text.done", "response.output_text.done"
                        ),
                        **where,
                        "content_index": 0,
                        "text": text,
                    }
                )
            part = {"type": "text", "text": text}
        response.reply_item = None
        item.update(
            status="completed" if status == "completed" else "incomplete",
            content=[part],
        )
        response.output.append(item)
        if not finished:
            return  # a failed response stops mid-item
        self._send(
            {
                "type": "response.content_part.done",
                **where,
                "content_index": 0,
                "part": part,
            }
        )
        self._send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": index,
                "item": item,
            }
        )

    async def _speak(
        self, response: _Response, where: dict[str, Any], text: str, finished: bool
    ) -> None:
        """Queue the reply's speech, stream its transcript, wait for generation."""
        assert self._speaker is not None
        response_id = response.id
        pcm = await self._synth.synthesize(text)
        if response.cancel_reason is not None:
            raise _CancelledResponseError

        def started() -> None:
            self._playing_response_id = response_id
            self._send_output_audio("started", response_id)

        def ended(completed: bool) -> None:
            if self._playing_response_id == response_id:
                self._playing_response_id = None
            if completed:
                self._send_output_audio("stopped", response_id)

        playback = self._speaker.play(pcm, started, ended)
        began = asyncio.get_running_loop().time()
        name = self._name(
            "response.audio_transcript.delta", "response.output_audio_transcript.delta"
        )
        await self._stream(
            response,
            [
                {"type": name, **where, "content_index": 0, "delta": delta}
                for delta in _word_deltas(text)
            ],
        )
        # Like the service, generation outpaces playback: the response is done while
        # its voice still plays; output_audio_buffer.stopped tells when that ends.
        # A cancelled response leaves its audio playing until cleared.
        generation = min(playback.duration * GENERATION_SHARE, MAX_GENERATION_SECONDS)
        await self._generate(
            response,
            playback,
            generation - (asyncio.get_running_loop().time() - began),
        )
        if not finished:
            return
        self._send(
            {
                "type": self._name("response.audio.done", "response.output_audio.done"),
                **where,
                "content_index": 0,
            }
        )
        self._send(
            {
                "type": self._name(
                    "response.audio_transcript.done",
                    "response.output_audio_transcript.done",
                ),
                **where,
                "content_index": 0,
                "transcript": text,
            }
        )

    async def _generate(
        self, response: _Response, playback: Playback, seconds: float
    ) -> None:
        """Wait ``seconds`` of generation, until a cancel or the audio is cleared."""
        if seconds > 0 and not playback.done.done():
            await asyncio.wait(
                {playback.done, response.cancelled},
                timeout=seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        cleared = playback.done.done() and not playback.done.result()
        if response.cancel_reason is None and cleared:
            # Cleared under it (the session closing, say): that ends it too.
            response.cancel("client_cancelled")
        if response.cancel_reason is not None:
            raise _CancelledResponseError

    async def _call_item(self, response: _Response, spec: FunctionCallSpec) -> None:
        response_id = response.id
        index = len(response.output)
        call_id = spec.call_id or new_call_id()
        item_id = _new_id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": spec.name,
            "call_id": call_id,
            "arguments": "",
        }
        self._send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": index,
                "item": dict(item),
            }
        )
        item.update(status="completed", arguments=spec.arguments)
        response.streaming_call = item
        where = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": index,
            "call_id": call_id,
        }
        await self._stream(
            response,
            [
                {
                    "type": "response.function_call_arguments.delta",
                    **where,
                    "delta": spec.arguments[i : i + _ARGUMENT_CHUNK],
                }
                for i in range(0, len(spec.arguments), _ARGUMENT_CHUNK)
            ],
        )
        done: dict[str, Any] = {
            "type": "response.function_call_arguments.done",
            **where,
            "arguments": spec.arguments,
        }
        if self._ga:
            done["name"] = spec.name
        self._send(done)
        response.streaming_call = None
        self._send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": index,
                "item": item,
            }
        )
        response.output.append(item)
        response.record["calls"].append(spec.name)

    def _session_object(self) -> dict[str, Any]:
        detection: dict[str, Any] | None = None
        if self._server_vad:
            detection = {
                **_DEFAULT_TURN_DETECTION,
                **(self._turn_detection or {}),
                "create_response": self._vad_setting("create_response"),
                "interrupt_response": self._vad_setting("interrupt_response"),
            }
        return {
            "id": self.id,
            "object": "realtime.session",
            "model": "itannix-emulator",
            "voice": "alloy",
            **self._config,
            "instructions": self.instructions,
            "tools": [dict(tool) for tool in self.tools],
            "turn_detection": detection,
            "modalities": self.modalities,
            "input_audio_transcription": self._transcription,
        }


async def _connecting_ended(pc: RTCPeerConnection, timeout: float = 5.0) -> None:
    """Wait (bounded) for a closed peer's own connecting task to end.

    aiortc ends it on a later turn of the loop; a peer that never connected (its
    client unreachable) would otherwise leave it pending after ``close()``.
    """

    def connecting() -> bool:
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            if frame is not None and frame.f_locals.get("self") is pc:
                return True
        return False

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while connecting():
                await asyncio.sleep(0.05)
