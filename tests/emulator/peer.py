"""One emulated realtime session: the aiortc answerer and the event protocol on it."""

from __future__ import annotations

import asyncio
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

from tests.network import NetworkProfile, UdpRelay, relay_answer

from .brain import (
    DEFAULT_AFTER_TOOLS_REPLY,
    FunctionCallSpec,
    ScriptedBrain,
    Turn,
    new_call_id,
)
from .vad import EnergyVad, drain
from .voice import SpeakerTrack, Synthesizer

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


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _word_deltas(text: str) -> list[str]:
    """Split ``text`` into word deltas whose concatenation is ``text``."""
    return re.findall(r"\s*\S+", text) or [text]


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


class _ClearedError(Exception):
    """The client cleared the output audio buffer while the reply was playing."""


@dataclass
class _ResponsePlan:
    """What one response will say and call."""

    reply: str
    function_calls: list[FunctionCallSpec] = field(default_factory=list)
    reply_after_tools: str | None = None
    modalities: list[str] = field(default_factory=lambda: list(DEFAULT_MODALITIES))
    input_text: str = ""


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
    ) -> None:
        """Create the session (the peer comes with the SDP offer).

        With a ``network``, the peer's media path goes through a relay that applies
        it (delay, jitter, loss) and that ``cut_network()`` cuts.
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
        self._brain = brain
        self._synth = synthesizer
        self._faults = faults
        self._ga = ga_names
        self._config: dict[str, Any] = {}
        self._transcription: dict[str, Any] | None = None
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._speaker: SpeakerTrack | None = None
        self._vad = EnergyVad(self._on_speech_started, self._on_speech_stopped)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._queued_plan: _ResponsePlan | None = None
        self._pending_user_text: list[str] = []
        self._awaiting_calls: dict[str, str] = {}  # call_id -> function name
        self._reply_after_tools: str | None = None
        self._audio_item_id: str | None = None
        self._last_item_id: str | None = None
        self._playing_response_id: str | None = None
        self._dropping_channel = False
        self._network = network
        self._relays: list[UdpRelay] = []

    # -- What tests read ---------------------------------------------------------

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

    def cut_network(self) -> None:
        """The network to the client vanishes; neither side is told (needs a network)."""
        assert self._relays, "the emulator's network profile was not set"
        for relay in self._relays:
            relay.cut()

    @property
    def response_active(self) -> bool:
        """Return True while a response is being produced."""
        return self._response_task is not None

    # -- Signalling --------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Answer the client's offer; raises ValueError for an offer aiortc rejects."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
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
        if self._network is None:
            return pc.localDescription.sdp
        sdp, self._relays = await relay_answer(pc.localDescription.sdp, self._network)
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
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        self._send({"type": "session.created", "session": self._session_object()})
        if self._faults.close_peer_after_open:
            self._request_close()

    def _on_channel_close(self) -> None:
        # The client hanging up its channel ends the session; our own fault does not.
        if not self._dropping_channel:
            self._request_close()

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
        self._queued_plan = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if self._speaker is not None:
            self._speaker.stop()
        if self._pc is not None:
            await self._pc.close()
        for relay in self._relays:
            relay.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- Sending -----------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> bool:
        """Send a server event; False when the channel is gone."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return False
        event = {"event_id": _new_id("event"), **event}
        channel.send(json.dumps(event))
        self.sent_events.append(event)
        self.sent_times.append(time.monotonic())
        return True

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
        except ValueError:
            self._send_error("invalid_json", "The event is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._send_error("invalid_event", "An event is a JSON object with a type.")
            return
        self.received_events.append(event)
        handler = self._handlers.get(event["type"])
        if handler is None:
            self._send_error(
                "unknown_event_type", f"Unknown event type: {event['type']!r}", event
            )
            return
        handler(self, event)

    def _on_session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            self._send_error("invalid_value", "session must be an object", event)
            return
        self._config.update(session)
        if "input_audio_transcription" in session:
            self._transcription = session["input_audio_transcription"]
        audio_input = (session.get("audio") or {}).get("input") or {}
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
                self._pending_user_text.append(text)
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
        if self._response_task is not None:
            self._send_error(
                "conversation_already_has_active_response",
                "A response is already in progress.",
                event,
            )
            return
        options = event.get("response") or {}
        modalities = (
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
            self._start_response(_ResponsePlan(reply=reply, modalities=modalities))
            return
        if self._pending_user_text:
            text = "\n".join(self._pending_user_text)
            self._pending_user_text.clear()
            turn = self._brain.next_text_turn(text)
        else:
            text, turn = "", self._brain.next_audio_turn()
        self._start_response(self._plan(turn, modalities, text))

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        if self._response_task is None:
            self._send_error(
                "response_cancel_not_active", "There is no active response.", event
            )
            return
        self._response_task.cancel()

    def _on_output_audio_clear(self, _event: dict[str, Any]) -> None:
        response_id = self._playing_response_id
        if self._speaker is not None:
            self._speaker.clear()
        self._send({"type": "output_audio_buffer.cleared", "response_id": response_id})

    def _on_input_audio_clear(self, _event: dict[str, Any]) -> None:
        # Like the service: the uncommitted audio is gone, an utterance in progress too.
        self._vad.reset()
        self._send({"type": "input_audio_buffer.cleared"})

    def _on_input_audio_commit(self, _event: dict[str, Any]) -> None:
        item_id = _new_id("item")
        self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self._last_item_id,
                "item_id": item_id,
            }
        )
        self._last_item_id = item_id

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

    def _on_speech_started(self, position_ms: float) -> None:
        self.speech_started_count += 1
        self._audio_item_id = _new_id("item")
        self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": round(position_ms),
                "item_id": self._audio_item_id,
            }
        )

    def _on_speech_stopped(self, position_ms: float) -> None:
        item_id = self._audio_item_id or _new_id("item")
        self._audio_item_id = None
        self._send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": round(position_ms),
                "item_id": item_id,
            }
        )
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
        turn = self._brain.next_audio_turn()
        transcript = turn.transcript or ""
        if self.input_transcription_enabled:
            self._send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": transcript,
                }
            )
        plan = self._plan(turn, self.modalities, transcript)
        if self._response_task is None:
            self._start_response(plan)
        else:
            # Server VAD never runs two responses at once: this one waits its turn.
            self._queued_plan = plan

    # -- Responses ---------------------------------------------------------------

    @staticmethod
    def _plan(turn: Turn, modalities: list[str], text: str) -> _ResponsePlan:
        return _ResponsePlan(
            reply=turn.reply,
            function_calls=list(turn.function_calls),
            reply_after_tools=turn.reply_after_tools,
            modalities=list(modalities),
            input_text=text,
        )

    def _start_response(self, plan: _ResponsePlan) -> None:
        self._response_task = self._spawn(self._run_response(plan))

    async def _run_response(self, plan: _ResponsePlan) -> None:
        response_id = _new_id("resp")
        response: dict[str, Any] = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "modalities": plan.modalities,
            "usage": None,
        }
        self._send({"type": "response.created", "response": dict(response)})
        output: list[dict[str, Any]] = response["output"]
        status: str | None = "completed"
        try:
            if plan.reply:
                output.append(await self._reply_item(response_id, len(output), plan))
            for spec in plan.function_calls:
                output.append(await self._call_item(response_id, len(output), spec))
        except _ChannelDroppedError:
            status = None
        except _ClearedError:
            status = "cancelled"
        except asyncio.CancelledError:
            self._response_task = None
            if not self.closed:
                self._finish_response(response, "cancelled", plan)
                self._start_queued_response()
            raise
        self._response_task = None
        if status == "completed":
            self._awaiting_calls = {
                item["call_id"]: item["name"]
                for item in output
                if item["type"] == "function_call"
            }
            self._reply_after_tools = plan.reply_after_tools
        if status is not None:
            self._finish_response(response, status, plan)
        self._start_queued_response()

    def _start_queued_response(self) -> None:
        if not self.closed and (plan := self._queued_plan) is not None:
            self._queued_plan = None
            self._start_response(plan)

    def _finish_response(
        self, response: dict[str, Any], status: str, plan: _ResponsePlan
    ) -> None:
        input_tokens = len(plan.input_text.split())
        output_tokens = len(plan.reply.split()) + sum(
            len(spec.arguments) // 4 + 1 for spec in plan.function_calls
        )
        response["status"] = status
        if status == "cancelled":
            response["status_details"] = {
                "type": "cancelled",
                "reason": "client_cancelled",
            }
        response["usage"] = {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        self._send({"type": "response.done", "response": response})

    def _send_delta(self, event: dict[str, Any], first: bool) -> None:
        self._send(event)
        if first and self._faults.drop_channel_mid_reply and self._channel is not None:
            self._dropping_channel = True
            self._channel.close()
            raise _ChannelDroppedError

    async def _reply_item(
        self, response_id: str, index: int, plan: _ResponsePlan
    ) -> dict[str, Any]:
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
        spoken = "audio" in plan.modalities and self._speaker is not None
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
        if spoken:
            await self._speak(response_id, where, plan.reply)
            part = {"type": "audio", "transcript": plan.reply}
        else:
            name = self._name("response.text.delta", "response.output_text.delta")
            for i, delta in enumerate(_word_deltas(plan.reply)):
                self._send_delta(
                    {"type": name, **where, "content_index": 0, "delta": delta}, i == 0
                )
                await asyncio.sleep(0)
            self._send(
                {
                    "type": self._name(
                        "response.text.done", "response.output_text.done"
                    ),
                    **where,
                    "content_index": 0,
                    "text": plan.reply,
                }
            )
            part = {"type": "text", "text": plan.reply}
        self._send(
            {
                "type": "response.content_part.done",
                **where,
                "content_index": 0,
                "part": part,
            }
        )
        item.update(status="completed", content=[part])
        self._send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": index,
                "item": item,
            }
        )
        return item

    async def _speak(self, response_id: str, where: dict[str, Any], text: str) -> None:
        """Queue the reply's speech, stream its transcript, wait for the last frame."""
        assert self._speaker is not None
        pcm = await self._synth.synthesize(text)

        def started() -> None:
            self._playing_response_id = response_id
            self._send(
                {"type": "output_audio_buffer.started", "response_id": response_id}
            )

        def finished(completed: bool) -> None:
            if self._playing_response_id == response_id:
                self._playing_response_id = None
            if completed:
                self._send(
                    {"type": "output_audio_buffer.stopped", "response_id": response_id}
                )

        playback = self._speaker.play(pcm, started, finished)
        name = self._name(
            "response.audio_transcript.delta", "response.output_audio_transcript.delta"
        )
        for i, delta in enumerate(_word_deltas(text)):
            self._send_delta(
                {"type": name, **where, "content_index": 0, "delta": delta}, i == 0
            )
            await asyncio.sleep(0)
        # Like the service, generation outpaces playback: the response is done while
        # its voice still plays; output_audio_buffer.stopped tells when that ends.
        # Shielded: a cancelled response leaves its audio playing until cleared.
        try:
            completed = await asyncio.wait_for(
                asyncio.shield(playback.done),
                min(playback.duration * GENERATION_SHARE, MAX_GENERATION_SECONDS),
            )
        except TimeoutError:
            completed = True
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
        if not completed:
            raise _ClearedError

    async def _call_item(
        self, response_id: str, index: int, spec: FunctionCallSpec
    ) -> dict[str, Any]:
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
        where = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": index,
            "call_id": call_id,
        }
        chunks = [
            spec.arguments[i : i + _ARGUMENT_CHUNK]
            for i in range(0, len(spec.arguments), _ARGUMENT_CHUNK)
        ]
        for i, delta in enumerate(chunks):
            self._send_delta(
                {
                    "type": "response.function_call_arguments.delta",
                    **where,
                    "delta": delta,
                },
                i == 0,
            )
            await asyncio.sleep(0)
        done: dict[str, Any] = {
            "type": "response.function_call_arguments.done",
            **where,
            "arguments": spec.arguments,
        }
        if self._ga:
            done["name"] = spec.name
        self._send(done)
        item.update(status="completed", arguments=spec.arguments)
        self._send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": index,
                "item": item,
            }
        )
        return item

    def _session_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.session",
            "model": "itannix-emulator",
            "voice": "alloy",
            "instructions": "",
            "tools": [],
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.4,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
            },
            **self._config,
            "modalities": self.modalities,
            "input_audio_transcription": self._transcription,
        }
