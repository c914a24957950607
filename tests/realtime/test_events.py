"""Event parsing: beta and GA names, function call name recovery, exactly-once."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.itannix.realtime import (
    FunctionCall,
    FunctionCallTracker,
    InputTranscript,
    ResponseDone,
    ServerErrorEvent,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    TranscriptDelta,
    TranscriptDone,
    Usage,
    parse_event,
)
from custom_components.itannix.realtime.events import SessionCreated


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"type": "response.text.delta", "delta": "Hi", "response_id": "r1"},
            TextDelta("Hi", "r1"),
        ),
        (
            {"type": "response.output_text.delta", "delta": "Hi", "item_id": "i"},
            TextDelta("Hi", None, "i"),
        ),
        ({"type": "response.text.done", "text": "Hi there"}, TextDone("Hi there")),
        ({"type": "response.output_text.done", "text": "Hi"}, TextDone("Hi")),
        (
            {"type": "response.audio_transcript.delta", "delta": "Hel"},
            TranscriptDelta("Hel"),
        ),
        (
            {"type": "response.output_audio_transcript.delta", "delta": "lo"},
            TranscriptDelta("lo"),
        ),
        (
            {"type": "response.audio_transcript.done", "transcript": "Hello"},
            TranscriptDone("Hello"),
        ),
        (
            {"type": "response.output_audio_transcript.done", "transcript": "Hello"},
            TranscriptDone("Hello"),
        ),
        (
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_1",
                "transcript": "turn on the light",
            },
            InputTranscript("turn on the light", "item_1"),
        ),
        (
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 120},
            SpeechStarted(120),
        ),
        (
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900},
            SpeechStopped(900),
        ),
        (
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "unknown_event_type",
                    "message": "Unknown event type",
                    "event_id": "evt_1",
                },
            },
            ServerErrorEvent(
                "invalid_request_error",
                "unknown_event_type",
                "Unknown event type",
                "evt_1",
            ),
        ),
        ({"type": "session.created", "session": {}}, SessionCreated({})),
        ({"type": "session.updated", "session": {}}, None),
        ({"no": "type"}, None),
    ],
)
def test_parse_event(event: dict[str, Any], expected: object) -> None:
    assert parse_event(event) == expected


def test_response_done_usage_status_and_calls() -> None:
    done = parse_event(
        {
            "type": "response.done",
            "response": {
                "id": "resp_1",
                "status": "completed",
                "usage": {"total_tokens": 30, "input_tokens": 10, "output_tokens": 20},
                "output": [
                    {"type": "message", "content": []},
                    {
                        "type": "function_call",
                        "call_id": "c1",
                        "name": "light_on",
                        "arguments": '{"room":"kitchen"}',
                    },
                ],
            },
        }
    )
    assert done == ResponseDone(
        status="completed",
        usage=Usage(30, 10, 20),
        response_id="resp_1",
        function_calls=(FunctionCall("c1", "light_on", '{"room":"kitchen"}'),),
    )
    assert Usage(1, 1, 0) + Usage(2, 0, 2) == Usage(3, 1, 2)


def test_response_done_failed_carries_message() -> None:
    done = parse_event(
        {
            "type": "response.done",
            "response": {
                "id": "r",
                "status": "failed",
                "status_details": {"error": {"message": "Quota exceeded"}},
                "usage": None,
            },
        }
    )
    assert isinstance(done, ResponseDone)
    assert done.status == "failed"
    assert done.usage is None
    assert done.error_message == "Quota exceeded"


def _added(call_id: str, name: str, item_id: str) -> dict[str, Any]:
    return {
        "type": "response.output_item.added",
        "item": {
            "id": item_id,
            "type": "function_call",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        },
    }


def _args_done(call_id: str, arguments: str, name: str | None = None) -> dict[str, Any]:
    event = {
        "type": "response.function_call_arguments.done",
        "call_id": call_id,
        "item_id": f"item_{call_id}",
        "arguments": arguments,
    }
    if name is not None:
        event["name"] = name
    return event


def _item_done(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "response.output_item.done",
        "item": {
            "id": f"item_{call_id}",
            "type": "function_call",
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        },
    }


def _response_done(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "response.done",
        "response": {
            "id": "r",
            "status": "completed",
            "output": [i["item"] for i in items],
        },
    }


def test_tracker_beta_name_from_item_added() -> None:
    """Beta arguments.done has no name: the earlier output_item.added supplies it."""
    tracker = FunctionCallTracker()
    assert tracker.feed(_added("c1", "light_on", "item_c1")) == []
    calls = tracker.feed(_args_done("c1", '{"room":"kitchen"}'))
    assert calls == [FunctionCall("c1", "light_on", '{"room":"kitchen"}')]
    # The same call described again later is not yielded a second time.
    assert tracker.feed(_item_done("c1", "light_on", '{"room":"kitchen"}')) == []
    assert tracker.feed(_response_done(_item_done("c1", "light_on", "{}"))) == []


def test_tracker_name_recovered_from_item_done() -> None:
    """Without output_item.added, the call waits for output_item.done's name."""
    tracker = FunctionCallTracker()
    assert tracker.feed(_args_done("c1", '{"a":1}')) == []
    assert list(tracker) == ["c1"]
    assert tracker.feed(_item_done("c1", "set_volume", '{"a":1}')) == [
        FunctionCall("c1", "set_volume", '{"a":1}')
    ]
    assert list(tracker) == []


def test_tracker_name_recovered_from_response_done() -> None:
    tracker = FunctionCallTracker()
    assert tracker.feed(_args_done("c1", "{}")) == []
    assert tracker.feed(_response_done(_item_done("c1", "stop_audio", "{}"))) == [
        FunctionCall("c1", "stop_audio", "{}")
    ]


def test_tracker_ga_done_with_name_completes_alone() -> None:
    tracker = FunctionCallTracker()
    assert tracker.feed(_args_done("c9", "{}", name="quiet_device")) == [
        FunctionCall("c9", "quiet_device", "{}")
    ]
    assert tracker.feed(_item_done("c9", "quiet_device", "{}")) == []


def test_tracker_only_item_done_vendor_style() -> None:
    """The vendor's clients act on output_item.done alone."""
    tracker = FunctionCallTracker()
    assert tracker.feed(_item_done("c1", "light_on", '{"x":1}')) == [
        FunctionCall("c1", "light_on", '{"x":1}')
    ]


def test_tracker_parallel_calls_each_once() -> None:
    tracker = FunctionCallTracker()
    events = [
        _added("c1", "light_on", "item_c1"),
        _added("c2", "light_off", "item_c2"),
        _args_done("c2", '{"room":"hall"}'),
        _args_done("c1", '{"room":"kitchen"}'),
        _item_done("c1", "light_on", '{"room":"kitchen"}'),
        _item_done("c2", "light_off", '{"room":"hall"}'),
        _response_done(
            _item_done("c1", "light_on", '{"room":"kitchen"}'),
            _item_done("c2", "light_off", '{"room":"hall"}'),
        ),
    ]
    calls = [call for event in events for call in tracker.feed(event)]
    assert calls == [
        FunctionCall("c2", "light_off", '{"room":"hall"}'),
        FunctionCall("c1", "light_on", '{"room":"kitchen"}'),
    ]


def test_tracker_arguments_done_by_item_id_only() -> None:
    tracker = FunctionCallTracker()
    tracker.feed(_added("c1", "light_on", "item_x"))
    event = {
        "type": "response.function_call_arguments.done",
        "item_id": "item_x",
        "arguments": "{}",
    }
    assert tracker.feed(event) == [FunctionCall("c1", "light_on", "{}")]


def test_tracker_ignores_other_items() -> None:
    tracker = FunctionCallTracker()
    assert (
        tracker.feed({"type": "response.output_item.done", "item": {"type": "message"}})
        == []
    )
    assert tracker.feed({"type": "response.output_item.done", "item": "junk"}) == []
    assert tracker.feed({"type": "response.done", "response": None}) == []
