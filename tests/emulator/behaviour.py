"""Documented protocol behaviours the emulator models, as knobs.

Each knob's default is the PESSIMISTIC reading of what the Realtime protocol documents:
what a client has to survive against the real service. ``Behaviour.ideal()`` is the
convenient opposite, for the rare test that needs ideal timing (and says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def device_tools() -> list[dict[str, Any]]:
    """The built-in device functions, as the dashboard puts them in every session."""
    return [
        {
            "type": "function",
            "name": "set_device_volume",
            "description": "Set the device's speaker volume.",
            "parameters": {
                "type": "object",
                "properties": {
                    "volume_level": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 100,
                        "description": "Volume in percent, 0 to 100.",
                    }
                },
                "required": ["volume_level"],
            },
        },
        {
            "type": "function",
            "name": "adjust_device_volume",
            "description": "Turn the device's volume up or down by 10%.",
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["increase", "decrease"]}
                },
                "required": ["action"],
            },
        },
        {
            "type": "function",
            "name": "quiet_device",
            "description": "Mute the device.",
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "type": "function",
            "name": "stop_audio",
            "description": "Stop what the device is playing.",
            "parameters": {"type": "object", "properties": {}},
        },
    ]


def function_tool(name: str, description: str = "") -> dict[str, Any]:
    """A Realtime function tool with a generic (argument-less) schema."""
    return {
        "type": "function",
        "name": name,
        "description": description or f"The dashboard's {name} function.",
        "parameters": {"type": "object", "properties": {}},
    }


@dataclass
class Behaviour:
    """How the emulated service behaves where the protocol allows several behaviours.

    Sessions read it when they need a value, so a test may change it at any time.
    """

    # session.created goes out this long after the data channel opens; client events
    # received before it are handled, in order, right after it.
    session_created_delay: float = 0.25
    # The dashboard's tools (the built-in device functions), in session.created.
    tools: list[dict[str, Any]] = field(default_factory=device_tools)
    # The dashboard's instructions, in session.created.
    instructions: str = "You are the ItanniX test assistant."
    # The assistant only calls functions in the session's current tool list; a scripted
    # call to any other is not made, and the reply is "I cannot do that." instead.
    known_tools_only: bool = True
    # Input transcription is asynchronous: .completed comes this long after the commit,
    # and with transcription_after_response only after the response.done of the
    # response made for that input (then this long again).
    transcription_delay: float = 0.3
    transcription_after_response: bool = True
    # ...input_audio_transcription.delta events (word by word) before .completed.
    transcription_deltas: bool = True
    # Seconds between the input being committed (or response.create) and
    # response.created.
    think_time: float = 0.0
    # Delta events of a response that still go out after it was cancelled (by
    # response.cancel, output_audio_buffer.clear or a barge-in), before its
    # response.done (status cancelled).
    cancel_latency: int = 3
    # Server VAD: speech starting during a response (or its audio) cancels it and
    # clears the output audio.
    interrupt_response: bool = True
    # Server VAD: the end of speech starts a response (False: commit only).
    create_response: bool = True
    # Seconds after the channel opened at which the session expires (error
    # session_expired, then the peer closes); None: never.
    max_session_duration: float | None = None
    # rate_limits.updated after every response.done.
    rate_limits: bool = True
    # Generation speed: seconds between two delta events of a response.
    delta_interval: float = 0.01
    # Over WebRTC, output_audio_buffer.started / .stopped / .cleared bracket what the
    # client's peer plays. These two knobs model a service that leaves them out (which
    # a client must survive): no output_audio_buffer.stopped (the voice still stops);
    # no output_audio_buffer.* event at all.
    output_audio_buffer_stopped: bool = True
    output_audio_buffer_events: bool = True

    @classmethod
    def ideal(cls) -> Behaviour:
        """Ideal timing: no session.created delay, transcript first, instant cancels."""
        return cls(
            session_created_delay=0.0,
            transcription_delay=0.0,
            transcription_after_response=False,
            transcription_deltas=False,
            cancel_latency=0,
        )
