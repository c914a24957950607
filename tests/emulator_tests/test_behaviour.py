"""The emulator's protocol behaviours (``emu.behaviour``), as a plain client sees them.

Every test drives the emulator with the project's transport only (``ItanniXClient`` and
``RealtimeConnection``), sends raw events, and asserts what goes over the wire: order,
ids and contents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import json
import time
from typing import Any

import aiohttp
import pytest

from custom_components.itannix.realtime import ItanniXClient, RealtimeConnection
from custom_components.itannix.realtime.audio import is_quiet
from tests.audio import speak
from tests.emulator import Behaviour, Emulator, FunctionCallSpec, Turn
from tests.emulator.peer import LATE_DELTA, REFUSAL
from tests.emulator.voice import Synthesizer

from .wire import (
    TEXT_DELTA,
    Wire,
    deltas,
    make_client,
    say,
    text_response,
    user_text,
    wire,
)

DEVICE_FUNCTIONS = [
    "set_device_volume",
    "adjust_device_volume",
    "quiet_device",
    "stop_audio",
]
LONG_REPLY = " ".join(f"word{i}" for i in range(300))
TRANSCRIPT_DELTA = "response.audio_transcript.delta"
ARGS_DELTA = "response.function_call_arguments.delta"
TRANSCRIPTION_DELTA = "conversation.item.input_audio_transcription.delta"
TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed"
TRANSCRIPTION_FAILED = "conversation.item.input_audio_transcription.failed"
TRANSCRIBE = "gpt-4o-mini-transcribe"


@pytest.fixture(autouse=True)
async def _shutdown_executor() -> AsyncIterator[None]:
    """Join aiortc's codec threads after each test (tears down after the emulator)."""
    yield
    await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession, emulator: Emulator) -> ItanniXClient:
    return make_client(http, emulator.url)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Real speech (espeak-ng), 16 kHz mono s16: loud enough for the emulator's VAD."""
    return speak("Turn on the kitchen light.", tmp_path_factory.mktemp("speech"))


# -- session.created ---------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.25, 1.0])
async def test_session_created_comes_late_and_early_events_wait_for_it(
    emulator: Emulator, client: ItanniXClient, delay: float
) -> None:
    assert Behaviour().session_created_delay == 0.25
    emulator.behaviour.session_created_delay = delay
    mine = {"type": "function", "name": "mine", "parameters": {"type": "object"}}
    async with wire(emulator, client) as (w, session):
        # Sent at once: before session.created went out.
        await w.send({"type": "session.update", "session": {"tools": [mine]}})
        await w.send({"type": "no.such.event", "event_id": "evt_early"})
        created = await w.until("session.created")
        assert created == 0  # the first server event, whatever the client sent
        assert w.times[0] - w.opened_at >= delay * 0.8
        assert [e["type"] for e in session.received_events] == [
            "session.update",
            "no.such.event",
        ]
        # Handled after it, in order, not dropped.
        updated = await w.until("session.updated")
        error = await w.until("error", since=updated)
        assert w.types(0, error + 1) == ["session.created", "session.updated", "error"]
        assert w.events[error]["error"]["event_id"] == "evt_early"
        assert w.events[updated]["session"]["tools"] == [mine]
        assert [t["name"] for t in w.events[0]["session"]["tools"]] == DEVICE_FUNCTIONS


async def test_ideal_session_created_at_once(
    emulator: Emulator, client: ItanniXClient
) -> None:
    # Ideal timing here only to show the knob's other end: no delay at all.
    emulator.behaviour = Behaviour.ideal()
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        assert session.sent_times[0] - w.opened_at < 0.2
        assert session.sent_events[0]["type"] == "session.created"


async def test_session_created_carries_the_dashboard(
    emulator: Emulator, client: ItanniXClient
) -> None:
    brain = emulator.assistant()
    brain.add_turn(
        Turn(reply="Sure.", function_calls=[FunctionCallSpec("light_on", "{}")])
    )
    brain.add_turn(
        Turn(
            reply="Hidden.",
            function_calls=[FunctionCallSpec("secret_fn", "{}")],
            dashboard_tools=False,
        )
    )
    # A second call to a registered name registers nothing new.
    brain.add_turn(Turn(function_calls=[FunctionCallSpec("light_on", "{}")]))
    async with wire(emulator, client) as (w, session):
        created = (await w.event("session.created"))["session"]
    assert created["instructions"] == "You are the ItanniX test assistant."
    tools = {t["name"]: t for t in created["tools"]}
    assert list(tools) == [*DEVICE_FUNCTIONS, "light_on"]
    assert all(t["type"] == "function" for t in created["tools"])
    volume = tools["set_device_volume"]["parameters"]
    assert volume["required"] == ["volume_level"]
    assert volume["properties"]["volume_level"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "description": "Volume in percent, 0 to 100.",
    }
    adjust = tools["adjust_device_volume"]["parameters"]
    assert adjust["properties"]["action"]["enum"] == ["increase", "decrease"]
    assert tools["quiet_device"]["parameters"] == {"type": "object", "properties": {}}
    assert tools["stop_audio"]["parameters"] == {"type": "object", "properties": {}}
    assert tools["light_on"]["parameters"] == {"type": "object", "properties": {}}
    assert session.tools == created["tools"]
    assert created["turn_detection"]["create_response"] is True
    assert created["turn_detection"]["interrupt_response"] is True


async def test_session_update_replaces_fields_whole(
    emulator: Emulator, client: ItanniXClient
) -> None:
    mine = {"type": "function", "name": "mine", "parameters": {"type": "object"}}
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        mark = await w.send({"type": "session.update", "session": {"tools": [mine]}})
        updated = (await w.event("session.updated", since=mark))["session"]
        assert updated["tools"] == [mine]  # replaced, not merged with the dashboard's
        assert session.tools == [mine]
        assert updated["instructions"] == "You are the ItanniX test assistant."
        mark = await w.send(
            {"type": "session.update", "session": {"instructions": "Be brief."}}
        )
        updated = (await w.event("session.updated", since=mark))["session"]
        assert updated["instructions"] == "Be brief."
        assert updated["tools"] == [mine]  # absent: unchanged
        mark = await w.send({"type": "session.update", "session": {"tools": "nope"}})
        error = (await w.event("error", since=mark))["error"]
        assert error["code"] == "invalid_value"
        assert session.tools == [mine]


# -- Tools the session has -----------------------------------------------------------


async def test_known_tools_only_refuses_calls_the_session_lacks(
    emulator: Emulator, client: ItanniXClient
) -> None:
    brain = emulator.assistant()
    call = FunctionCallSpec("light_on", '{"room":"kitchen"}', "call_light")
    brain.add_turn(Turn(user_text="light please", reply="Sure.", function_calls=[call]))
    brain.add_turn(Turn(user_text="light again", reply="Sure.", function_calls=[call]))
    async with wire(emulator, client) as (w, session):
        created = (await w.event("session.created"))["session"]
        assert "light_on" in [t["name"] for t in created["tools"]]
        # A naive client replaces the dashboard's tools with its own.
        own = {"type": "function", "name": "other", "parameters": {"type": "object"}}
        await w.send({"type": "session.update", "session": {"tools": [own]}})
        await w.send(user_text("light please"))
        mark = await w.send(text_response())
        done = await w.event("response.done", since=mark)
        response = done["response"]
        assert [item["type"] for item in response["output"]] == ["message"]
        assert response["output"][0]["content"][0]["text"] == REFUSAL
        assert deltas(w.events[mark:]) == REFUSAL
        assert ARGS_DELTA not in w.types(mark)
        assert session.refused_calls == ["light_on"]
        assert session.responses[-1]["calls"] == []

        # The union of the session's tools and the client's: the call is made.
        await w.send(
            {"type": "session.update", "session": {"tools": [*created["tools"], own]}}
        )
        await w.send(user_text("light again"))
        mark = await w.send(text_response())
        done = await w.event("response.done", since=mark)
        output = done["response"]["output"]
        assert [item["type"] for item in output] == ["message", "function_call"]
        assert (output[1]["name"], output[1]["call_id"]) == ("light_on", "call_light")
        assert session.refused_calls == ["light_on"]


async def test_any_call_is_made_without_known_tools_only(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.behaviour.known_tools_only = False
    emulator.assistant().add_turn(
        Turn(
            reply="Sure.",
            function_calls=[FunctionCallSpec("unlisted", "{}", "call_x")],
            dashboard_tools=False,
        )
    )
    async with wire(emulator, client) as (w, session):
        created = (await w.event("session.created"))["session"]
        assert "unlisted" not in [t["name"] for t in created["tools"]]
        mark = await w.send(text_response())
        output = (await w.event("response.done", since=mark))["response"]["output"]
        assert output[-1]["name"] == "unlisted"
        assert session.refused_calls == []


# -- Input transcription ---------------------------------------------------------------


async def test_transcription_comes_after_the_response_with_deltas(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    behaviour = Behaviour()
    assert (behaviour.transcription_delay, behaviour.transcription_after_response) == (
        0.3,
        True,
    )
    assert behaviour.transcription_deltas
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply="Turning it on.")
    )
    async with wire(
        emulator, client, modalities=("text",), input_transcription_model=TRANSCRIBE
    ) as (w, session):
        await w.until("session.updated")
        say(w.connection, speech)
        committed = await w.event("input_audio_buffer.committed")
        item_id = committed["item_id"]
        done = await w.until("response.done")
        completed = await w.until(TRANSCRIPTION_COMPLETED)
    assert w.events[completed]["item_id"] == item_id
    assert w.events[completed]["content_index"] == 0
    assert w.events[completed]["transcript"] == "turn on the kitchen light"
    assert w.times[completed] - w.times[done] >= 0.25
    types = w.types()
    start = types.index("input_audio_buffer.speech_started")
    assert types[start : start + 4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]
    first_delta = types.index(TRANSCRIPTION_DELTA)
    assert types.index("response.created") < done < first_delta < completed
    transcription = [e for e in w.events if e["type"] == TRANSCRIPTION_DELTA]
    assert [e["delta"] for e in transcription] == [
        "turn",
        " on",
        " the",
        " kitchen",
        " light",
    ]
    assert {(e["item_id"], e["content_index"]) for e in transcription} == {(item_id, 0)}
    assert w.events[done]["response"]["status"] == "completed"
    assert session.responses[-1]["input"] == "turn on the kitchen light"


async def test_ideal_transcription_comes_before_the_response(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    # Ideal timing to show the knobs' other end: transcript first, no deltas.
    emulator.behaviour = Behaviour.ideal()
    emulator.assistant().add_turn(Turn(transcript="lights", reply="Done."))
    async with wire(
        emulator, client, modalities=("text",), input_transcription_model=TRANSCRIBE
    ) as (w, _session):
        await w.until("session.updated")
        say(w.connection, speech)
        await w.until("response.done")
    types = w.types()
    start = types.index("input_audio_buffer.committed")
    assert types[start : start + 4] == [
        "input_audio_buffer.committed",
        "conversation.item.created",
        TRANSCRIPTION_COMPLETED,
        "response.created",
    ]
    assert TRANSCRIPTION_DELTA not in types


async def test_transcription_delay_without_waiting_for_the_response(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    emulator.behaviour.transcription_after_response = False
    emulator.behaviour.transcription_deltas = False
    emulator.behaviour.transcription_delay = 0.5
    emulator.behaviour.think_time = 2.0
    emulator.assistant().add_turn(Turn(transcript="lights", reply="Done."))
    async with wire(
        emulator, client, modalities=("text",), input_transcription_model=TRANSCRIBE
    ) as (w, _session):
        await w.until("session.updated")
        say(w.connection, speech)
        committed = await w.until("input_audio_buffer.committed")
        completed = await w.until(TRANSCRIPTION_COMPLETED)
        created = await w.until("response.created")
    assert committed < completed < created
    assert 0.4 <= w.times[completed] - w.times[committed] < 1.5
    assert TRANSCRIPTION_DELTA not in w.types()


async def test_transcription_failure_still_gets_a_response(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    emulator.assistant().add_turn(
        Turn(
            transcript="lights",
            reply="I think you want the lights.",
            transcription_error="Audio was unintelligible.",
        )
    )
    async with wire(
        emulator, client, modalities=("text",), input_transcription_model=TRANSCRIBE
    ) as (w, _session):
        await w.until("session.updated")
        say(w.connection, speech)
        item_id = (await w.event("input_audio_buffer.committed"))["item_id"]
        done = await w.until("response.done")
        failed = await w.until(TRANSCRIPTION_FAILED)
        await asyncio.sleep(0.5)
    assert w.events[done]["response"]["status"] == "completed"
    assert deltas(w.events) == "I think you want the lights."
    assert w.events[failed]["item_id"] == item_id
    assert w.events[failed]["content_index"] == 0
    assert w.events[failed]["error"] == {
        "type": "transcription_error",
        "code": "audio_unintelligible",
        "message": "Audio was unintelligible.",
    }
    assert TRANSCRIPTION_COMPLETED not in w.types()
    assert TRANSCRIPTION_DELTA not in w.types()


async def test_no_transcription_unless_enabled(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    emulator.assistant().add_turn(Turn(transcript="lights", reply="Done."))
    async with wire(emulator, client, modalities=("text",)) as (w, _session):
        await w.until("session.created")
        say(w.connection, speech)
        await w.until("response.done")
        await asyncio.sleep(0.8)
    assert not [t for t in w.types() if "input_audio_transcription" in t]


# -- Server VAD: create_response, interrupt_response ----------------------------------


async def test_without_create_response_the_client_asks(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    emulator.behaviour.create_response = False
    emulator.assistant().add_turn(Turn(transcript="lights", reply="Lights on."))
    async with wire(
        emulator, client, modalities=("text",), input_transcription_model=TRANSCRIBE
    ) as (w, session):
        created = (await w.event("session.created"))["session"]
        assert created["turn_detection"]["create_response"] is False
        await w.until("session.updated")
        say(w.connection, speech)
        item_id = (await w.event("input_audio_buffer.committed"))["item_id"]
        # No response of its own; with none to wait for, the transcript comes.
        heard = await w.event(TRANSCRIPTION_COMPLETED)
        assert heard["item_id"] == item_id
        assert heard["transcript"] == "lights"
        await asyncio.sleep(0.3)
        assert "response.created" not in w.types()
        mark = await w.send(text_response())
        done = await w.event("response.done", since=mark)
    assert done["response"]["status"] == "completed"
    assert deltas(w.events[mark:]) == "Lights on."
    assert session.responses[-1]["input"] == "lights"


async def test_speech_during_a_spoken_reply_interrupts_it(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    assert Behaviour().interrupt_response
    # Slow generation: the barge-in lands while the reply is still being generated.
    emulator.behaviour.delta_interval = 0.1
    story = " ".join(["Once upon a time there was a long story."] * 6)
    brain = emulator.assistant()
    brain.add_turn(Turn(transcript="tell me a story", reply=story))
    brain.add_turn(Turn(transcript="stop", reply="Stopped."))
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        say(w.connection, speech)
        first = await w.event("response.created")
        rid = first["response"]["id"]
        await w.until("output_audio_buffer.started")
        say(w.connection, speech)
        barge = await w.until(
            "input_audio_buffer.speech_started",
            since=w.types().index("response.created"),
        )
        done = await w.until(
            "response.done", where=lambda e: e["response"]["id"] == rid
        )
        second_done = await w.until("response.done", since=done + 1)
    cleared = w.types().index("output_audio_buffer.cleared")
    assert barge < cleared < done
    assert w.events[cleared]["response_id"] == rid
    response = w.events[done]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {
        "type": "cancelled",
        "reason": "turn_detected",
    }
    # What was in flight still came: exactly cancel_latency transcript deltas.
    record = next(r for r in session.responses if r["id"] == rid)
    after = [
        e["type"]
        for e in session.sent_events[record["cancelled_at"] :]
        if e.get("response_id") == rid or (e.get("response") or {}).get("id") == rid
    ]
    assert after[:4] == ["output_audio_buffer.cleared", *[TRANSCRIPT_DELTA] * 3]
    assert after[4:] == ["response.done"]
    # Its audio never finishes: it was cleared.
    assert "output_audio_buffer.stopped" not in [e["type"] for e in w.of(rid)]
    assert w.events[second_done]["response"]["status"] == "completed"
    assert deltas(w.events[done:], TRANSCRIPT_DELTA) == "Stopped."


async def test_without_interrupt_response_speech_waits_its_turn(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    emulator.behaviour.interrupt_response = False
    emulator.behaviour.delta_interval = 0.03
    reply = " ".join(LONG_REPLY.split()[:150])
    brain = emulator.assistant()
    brain.add_turn(Turn(transcript="first", reply=reply))
    brain.add_turn(Turn(transcript="second", reply="Second answer."))
    async with wire(emulator, client, modalities=("text",)) as (w, session):
        await w.until("session.created")
        say(w.connection, speech)
        first = await w.event("response.created")
        say(w.connection, speech)
        await w.until(
            "input_audio_buffer.committed", since=w.types().index("response.created")
        )
        rid = first["response"]["id"]
        done = await w.until(
            "response.done", where=lambda e: e["response"]["id"] == rid
        )
        second = await w.until("response.done", since=done + 1)
    assert w.events[done]["response"]["status"] == "completed"
    assert deltas(w.of(rid)) == reply
    assert "output_audio_buffer.cleared" not in w.types()
    # The second answer starts once the first is done.
    assert w.types().index("response.created", done) < second
    assert w.events[second]["response"]["status"] == "completed"
    assert [r["input"] for r in session.responses] == ["first", "second"]


# -- One response at a time, think time --------------------------------------------------


async def test_second_response_create_is_refused_with_its_event_id(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.assistant().add_turn(Turn(reply=LONG_REPLY))
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        first = await w.send(text_response("evt_first"))
        await w.until(TEXT_DELTA, since=first)
        await w.send(text_response("evt_second"))
        error = await w.event("error", since=first)
        done = await w.event("response.done", since=first)
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["event_id"] == "evt_second"
    # The first carries on to the end.
    assert done["response"]["status"] == "completed"
    assert deltas(w.events) == LONG_REPLY
    assert w.types().count("response.created") == 1
    assert len(session.responses) == 1


async def test_think_time_before_response_created(
    emulator: Emulator, client: ItanniXClient
) -> None:
    assert Behaviour().think_time == 0.0
    emulator.behaviour.think_time = 0.6
    async with wire(emulator, client) as (w, _session):
        await w.until("session.created")
        await w.send(user_text("hello"))
        sent = time.monotonic()
        mark = await w.send(text_response())
        created = await w.until("response.created", since=mark)
        done = await w.until("response.done", since=mark)
    assert w.times[created] - sent >= 0.5
    assert deltas(w.events[created:done]) == "I heard: hello"


async def test_cancel_during_think_time(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.behaviour.think_time = 1.0
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        mark = await w.send(text_response())
        await asyncio.sleep(0.3)
        await w.send({"type": "response.cancel"})
        done = await w.until("response.done", since=mark)
    assert w.types(mark, done + 1)[-2:] == ["response.created", "response.done"]
    assert w.events[done]["response"]["status"] == "cancelled"
    assert session.responses[-1]["status"] == "cancelled"


# -- Cancel latency ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "latency"),
    [("response.cancel", 3), ("output_audio_buffer.clear", 3), ("response.cancel", 0)],
)
async def test_text_deltas_in_flight_arrive_after_a_cancel(
    emulator: Emulator, client: ItanniXClient, how: str, latency: int
) -> None:
    assert Behaviour().cancel_latency == 3
    emulator.behaviour.cancel_latency = latency
    emulator.assistant().add_turn(Turn(reply=LONG_REPLY))
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        mark = await w.send(text_response())
        rid = (await w.event("response.created", since=mark))["response"]["id"]
        await w.until(TEXT_DELTA, since=mark)
        cancelled = await w.send({"type": how})
        done = await w.until("response.done", since=mark)
        await asyncio.sleep(0.2)
    # The service's side: exactly `latency` deltas after the cancel, then done.
    record = session.responses[-1]
    assert record["id"] == rid
    assert record["status"] == "cancelled"
    after = [
        e["type"]
        for e in session.sent_events[record["cancelled_at"] :]
        if e.get("response_id") == rid or (e.get("response") or {}).get("id") == rid
    ]
    expected = [TEXT_DELTA] * latency + ["response.done"]
    if how == "output_audio_buffer.clear":
        expected.insert(0, "output_audio_buffer.cleared")
    assert after == expected
    # The client's side: deltas after its cancel, nothing of it after response.done.
    assert w.types(cancelled, done).count(TEXT_DELTA) >= latency
    assert [e["type"] for e in w.of(rid, since=done + 1)] == []
    response = w.events[done]["response"]
    assert response["status_details"] == {
        "type": "cancelled",
        "reason": "client_cancelled",
    }
    partial = response["output"][0]
    assert partial["status"] == "incomplete"
    assert partial["content"][0]["text"] == deltas(w.of(rid))
    assert LONG_REPLY.startswith(deltas(w.of(rid)))
    assert deltas(w.of(rid)) != LONG_REPLY
    assert "response.text.done" not in w.types(mark)


async def test_function_call_in_flight_still_completes_after_a_cancel(
    emulator: Emulator, client: ItanniXClient
) -> None:
    arguments = json.dumps({"room": "kitchen", "note": "x" * 1600})
    emulator.assistant().add_turn(
        Turn(
            reply="",
            function_calls=[FunctionCallSpec("light_on", arguments, "call_slow")],
        )
    )
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        mark = await w.send(text_response())
        await w.until(ARGS_DELTA, since=mark)
        cancelled = await w.send({"type": "response.cancel"})
        item_done = await w.until("response.output_item.done", since=mark)
        done = await w.until("response.done", since=mark)
        # The cancelled response's call is not awaited: the next response needs no
        # output for it.
        again = await w.send(text_response())
        next_done = await w.event("response.done", since=again)
    assert cancelled <= item_done < done
    item = w.events[item_done]["item"]
    assert (item["type"], item["status"], item["call_id"]) == (
        "function_call",
        "completed",
        "call_slow",
    )
    assert item["arguments"] == arguments
    assert "response.function_call_arguments.done" not in w.types(mark)
    record = session.responses[0]
    after = [
        e["type"]
        for e in session.sent_events[record["cancelled_at"] :]
        if e.get("response_id") == record["id"]
        or (e.get("response") or {}).get("id") == record["id"]
    ]
    assert after == [ARGS_DELTA] * 3 + ["response.output_item.done", "response.done"]
    response = w.events[done]["response"]
    assert response["status"] == "cancelled"
    assert response["output"] == [item]
    assert "error" not in w.types(again)
    assert next_done["response"]["status"] == "completed"


# -- response.done status ----------------------------------------------------------------


async def test_failed_response(emulator: Emulator, client: ItanniXClient) -> None:
    emulator.assistant().add_turn(
        Turn(
            reply="One two three four five six.",
            function_calls=[FunctionCallSpec("light_on", "{}")],
            status="failed",
        )
    )
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        mark = await w.send(text_response())
        done = await w.event("response.done", since=mark)
    response = done["response"]
    assert response["status"] == "failed"
    assert response["status_details"] == {
        "type": "failed",
        "error": {
            "type": "server_error",
            "code": "server_error",
            "message": "The server had an error while processing your request. "
            "Please retry.",
        },
    }
    assert deltas(w.events) == "One two three"
    types = w.types(mark)
    assert "response.text.done" not in types
    assert ARGS_DELTA not in types
    assert session.responses[-1]["status"] == "failed"


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        (None, {"type": "incomplete", "reason": "max_output_tokens"}),
        (
            {"type": "incomplete", "reason": "content_filter"},
            {"type": "incomplete", "reason": "content_filter"},
        ),
    ],
)
async def test_incomplete_response(
    emulator: Emulator,
    client: ItanniXClient,
    details: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    emulator.assistant().add_turn(
        Turn(
            reply="One two three four five six.",
            status="incomplete",
            status_details=details,
        )
    )
    async with wire(emulator, client) as (w, _session):
        await w.until("session.created")
        mark = await w.send(text_response())
        done = await w.event("response.done", since=mark)
        text_done = await w.event("response.text.done", since=mark)
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"] == expected
    assert deltas(w.events) == "One two three"
    assert text_done["text"] == "One two three"
    assert done["response"]["output"][0]["status"] == "incomplete"


# -- Session lifetime ------------------------------------------------------------------------


def expired_message(minutes: str) -> dict[str, Any]:
    return {
        "type": "invalid_request_error",
        "code": "session_expired",
        "message": f"Your session hit the maximum duration of {minutes} minutes.",
        "param": None,
        "event_id": None,
    }


async def test_session_expires_at_max_session_duration(
    emulator: Emulator, client: ItanniXClient
) -> None:
    assert Behaviour().max_session_duration is None
    emulator.behaviour.max_session_duration = 1.2
    async with wire(emulator, client) as (w, session):
        error = await w.until("error")
        async with asyncio.timeout(10):
            reason = await w.connection.wait_closed()
    assert reason is not None  # the service closed it
    assert w.events[error]["error"] == expired_message("0.02")
    assert w.times[error] - w.opened_at >= 1.0
    assert w.types()[-1] == "error"
    assert session.expired
    assert session.closed


async def test_expire_now(emulator: Emulator, client: ItanniXClient) -> None:
    async with wire(emulator, client) as (w, session):
        await w.until("session.created")
        closing = session.expire()
        assert session.expired
        assert session.sent_events[-1]["error"]["code"] == "session_expired"
        assert session.expire() is closing  # once
        await closing
        assert session.closed
        error = await w.event("error")
        async with asyncio.timeout(10):
            assert await w.connection.wait_closed() is not None
    assert error["error"] == expired_message("60")
    assert session.closed


# -- Rate limits ------------------------------------------------------------------------------


async def test_rate_limits_follow_every_response_done(
    emulator: Emulator, client: ItanniXClient
) -> None:
    assert Behaviour().rate_limits
    async with wire(emulator, client) as (w, _session):
        await w.until("session.created")
        limits = []
        for text in ("one", "two"):
            await w.send(user_text(text))
            mark = await w.send(text_response())
            done = await w.until("response.done", since=mark)
            assert await w.until("rate_limits.updated", since=done) == done + 1
            limits.append(w.events[done + 1]["rate_limits"])
        # Read when needed: switching it off after start takes effect at once.
        emulator.behaviour = Behaviour(rate_limits=False)
        mark = await w.send(text_response())
        done = await w.until("response.done", since=mark)
        await asyncio.sleep(0.3)
        assert "rate_limits.updated" not in w.types(done)
    for entries in limits:
        assert [e["name"] for e in entries] == ["requests", "tokens"]
        for entry in entries:
            assert set(entry) == {"name", "limit", "remaining", "reset_seconds"}
            assert 0 <= entry["remaining"] < entry["limit"]
            assert entry["reset_seconds"] > 0
    assert limits[1][0]["remaining"] == limits[0][0]["remaining"] - 1
    assert limits[1][1]["remaining"] < limits[0][1]["remaining"]


# -- Faults ----------------------------------------------------------------------------------


async def test_repeated_response_done_fault(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.repeat_response_done = True
    async with wire(emulator, client) as (w, _session):
        await w.until("session.created")
        mark = await w.send(text_response())
        first = await w.until("response.done", since=mark)
        second = await w.until("response.done", since=first + 1)
    assert second == first + 1
    one, two = w.events[first], w.events[second]
    assert one["response"] == two["response"]
    assert one["event_id"] != two["event_id"]


async def test_late_delta_after_done_fault(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.late_delta_after_done = True
    async with wire(emulator, client) as (w, _session):
        await w.until("session.created")
        await w.send(user_text("hi"))
        mark = await w.send(text_response())
        done = await w.until("response.done", since=mark)
        late = await w.event(TEXT_DELTA, since=done)
    response = w.events[done]["response"]
    assert late["response_id"] == response["id"]
    assert late["item_id"] == response["output"][0]["id"]
    assert late["delta"] == LATE_DELTA
    assert deltas(w.events[mark:done]) == "I heard: hi"


# -- output_audio_buffer.* ------------------------------------------------------------

SPOKEN_REPLY = "Sure. The kitchen light is on now, and the oven is warming up."
OUTPUT_AUDIO_BUFFER = "output_audio_buffer."


def voiced_ms(pcm: bytes) -> int:
    """Milliseconds of 16 kHz s16 audio that are not silence, in 20 ms windows."""
    windows = [pcm[i : i + 640] for i in range(0, len(pcm) - 639, 640)]
    return 20 * sum(not is_quiet(window) for window in windows)


async def reference_voiced_ms(text: str) -> int:
    """How much of the emulator's voice for ``text`` is voiced, in milliseconds."""
    pcm48 = await Synthesizer().synthesize(text)
    return voiced_ms(bytes(memoryview(pcm48).cast("h")[::3]))


class Heard:
    """The voice a client receives, and when its last voiced chunk came."""

    def __init__(self, connection: RealtimeConnection) -> None:
        self._audio = connection.speaker.subscribe()
        self.pcm = bytearray()
        self.last_voiced = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        async for chunk in self._audio:
            self.pcm += chunk
            if not is_quiet(chunk):
                self.last_voiced = time.monotonic()

    async def until_quiet(self, seconds: float, timeout: float = 15.0) -> None:
        """Wait until nothing voiced came for ``seconds`` (the voice played out)."""
        async with asyncio.timeout(timeout):
            while time.monotonic() - self.last_voiced < seconds:
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._audio.close()
        await self._task


def buffer_events(w: Wire, since: int = 0) -> list[tuple[str, str | None]]:
    return [
        (e["type"].removeprefix(OUTPUT_AUDIO_BUFFER), e.get("response_id"))
        for e in w.events[since:]
        if e["type"].startswith(OUTPUT_AUDIO_BUFFER)
    ]


async def test_output_audio_buffer_brackets_the_voice(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    """By default started goes with the voice's first frame, stopped with its last."""
    assert Behaviour().output_audio_buffer_stopped
    assert Behaviour().output_audio_buffer_events
    emulator.assistant().add_turn(Turn(transcript="light", reply=SPOKEN_REPLY))
    async with wire(emulator, client, receive_audio=True) as (w, _session):
        heard = Heard(w.connection)
        await w.until("session.created")
        say(w.connection, speech)
        done = await w.until("response.done")
        rid = w.events[done]["response"]["id"]
        stopped = await w.until("output_audio_buffer.stopped", since=done)
        await heard.until_quiet(1.0)
        await heard.close()
    assert buffer_events(w) == [("started", rid), ("stopped", rid)]
    # Generation outpaces playback: done comes first, stopped once the voice played.
    assert w.times[stopped] - w.times[done] > 1.0
    assert abs(w.times[stopped] - heard.last_voiced) < 0.3
    assert voiced_ms(bytes(heard.pcm)) > 0.8 * await reference_voiced_ms(SPOKEN_REPLY)


async def test_without_output_audio_buffer_stopped_the_voice_still_ends(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    """A service that says the voice started, never that it stopped; clear still works."""
    emulator.behaviour.output_audio_buffer_stopped = False
    emulator.assistant().add_turn(Turn(transcript="light", reply=SPOKEN_REPLY))
    emulator.assistant().add_turn(Turn(transcript="again", reply=SPOKEN_REPLY))
    async with wire(emulator, client, receive_audio=True) as (w, _session):
        heard = Heard(w.connection)
        await w.until("session.created")
        say(w.connection, speech)
        done = await w.until("response.done")
        rid = w.events[done]["response"]["id"]
        await heard.until_quiet(1.0)
        first = bytes(heard.pcm)
        # The next reply's voice, cleared while it plays: cleared still comes.
        say(w.connection, speech)
        second = await w.until("output_audio_buffer.started", since=done)
        mark = await w.send({"type": "output_audio_buffer.clear"})
        cleared = await w.event("output_audio_buffer.cleared", since=mark)
        await heard.close()
    assert ("stopped", rid) not in buffer_events(w)
    assert buffer_events(w) == [
        ("started", rid),
        ("started", cleared["response_id"]),
        ("cleared", cleared["response_id"]),
    ]
    assert cleared["response_id"] == w.events[second]["response_id"] != rid
    # The voice itself played whole, and ended.
    assert voiced_ms(first) > 0.8 * await reference_voiced_ms(SPOKEN_REPLY)


async def test_without_output_audio_buffer_events_the_voice_still_plays(
    emulator: Emulator, client: ItanniXClient, speech: bytes
) -> None:
    """A service that sends no output_audio_buffer.* event at all, even for a clear."""
    emulator.behaviour.output_audio_buffer_events = False
    emulator.assistant().add_turn(Turn(transcript="light", reply=SPOKEN_REPLY))
    async with wire(emulator, client, receive_audio=True) as (w, _session):
        heard = Heard(w.connection)
        await w.until("session.created")
        say(w.connection, speech)
        done = await w.until("response.done")
        await heard.until_quiet(1.0)
        await w.send({"type": "output_audio_buffer.clear"})
        await asyncio.sleep(0.5)
        await heard.close()
    assert w.events[done]["response"]["status"] == "completed"
    assert buffer_events(w) == []
    assert voiced_ms(bytes(heard.pcm)) > 0.8 * await reference_voiced_ms(SPOKEN_REPLY)
