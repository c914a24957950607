"""Sessions over real loopback WebRTC against the emulator: text, audio, tools."""

from __future__ import annotations

import asyncio
import json
import math
import struct
from typing import TYPE_CHECKING, Any

import pytest

from custom_components.itannix.realtime import (
    AudioTurn,
    FunctionCall,
    ItanniXClient,
    RealtimeConnection,
    RealtimeSession,
)
from tests.emulator import Emulator, FunctionCallSpec, Turn

from .conftest import CLIENT_ID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import aiohttp


def rms(pcm: bytes) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm[: len(pcm) // 2 * 2])
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


@pytest.fixture
async def session(client: ItanniXClient) -> AsyncIterator[RealtimeSession]:
    """Provide a connected session (input transcription on), closed after the test."""
    session = await RealtimeSession.open(
        client, input_transcription_model="gpt-4o-mini-transcribe", function_timeout=5
    )
    try:
        yield session
    finally:
        await session.close()
    assert session.closed


async def test_connect_and_close_leave_nothing_behind(
    emulator: Emulator, client: ItanniXClient
) -> None:
    connection = RealtimeConnection(client)
    await connection.connect()
    assert connection.is_open
    assert connection.speaker.running
    emu_session = emulator.sessions[-1]
    assert emu_session.channel_label == "messages"
    assert not emu_session.input_transcription_enabled
    await connection.close()
    await connection.close()  # idempotent
    assert connection.closed
    assert connection.close_reason is None
    assert not connection.speaker.running


async def test_channel_label_is_a_parameter(
    emulator: Emulator, client: ItanniXClient
) -> None:
    async with RealtimeConnection(client, channel_label="oai-events") as connection:
        assert connection.is_open
        assert emulator.sessions[-1].channel_label == "oai-events"


async def test_transcription_session_update(
    emulator: Emulator, session: RealtimeSession
) -> None:
    emu_session = emulator.sessions[-1]
    async with asyncio.timeout(5):
        while not emu_session.input_transcription_enabled:
            await asyncio.sleep(0.01)
    update = emu_session.received_events[0]
    assert update["type"] == "session.update"
    assert update["session"]["input_audio_transcription"] == {
        "model": "gpt-4o-mini-transcribe"
    }


async def test_text_round_trip(emulator: Emulator, session: RealtimeSession) -> None:
    emulator.assistant().add_turn(
        Turn(user_text="What time is it?", reply="It is noon in the kitchen.")
    )
    reply = await session.ask("What time is it?")
    deltas = [delta async for delta in reply]
    assert len(deltas) > 1  # streamed, not one lump
    assert "".join(deltas) == "It is noon in the kitchen."
    assert await reply.text() == "It is noon in the kitchen."
    assert reply.usage.total_tokens > 0
    assert session.usage.total_tokens == reply.usage.total_tokens
    sent = [
        e
        for e in emulator.sessions[-1].received_events
        if e["type"] != "session.update"
    ]
    assert sent[0]["type"] == "conversation.item.create"
    assert sent[0]["item"]["content"] == [
        {"type": "input_text", "text": "What time is it?"}
    ]
    assert sent[1]["type"] == "response.create"
    assert sent[1]["response"] == {"modalities": ["text"]}
    # A second turn on the same session.
    second = await session.ask("anything else")
    assert await second.text() == "I heard: anything else"
    assert session.usage.total_tokens > reply.usage.total_tokens


async def test_text_round_trip_ga_event_names(
    socket_enabled: None,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    credentials: Any,
) -> None:
    emu = Emulator(
        workspace_key="wk-test",
        state_file=tmp_path / "state.json",
        host="127.0.0.1",
        port=0,
        ga_names=True,
    )
    await emu.start()
    try:
        client = ItanniXClient(http, emu.url, credentials)
        emu.assistant().add_turn(
            Turn(
                reply="Checking.",
                function_calls=[FunctionCallSpec("get_time", "{}")],
                reply_after_tools="It is {get_time}.",
            )
        )

        async def handler(call: FunctionCall) -> str:
            return "noon"

        session = await RealtimeSession.open(client, function_handler=handler)
        try:
            reply = await session.ask("time?")
            assert await reply.text() == "Checking. It is noon."
        finally:
            await session.close()
        types = {e["type"] for e in emu.sessions[-1].sent_events}
        assert "response.output_text.delta" in types
        assert "response.text.delta" not in types
    finally:
        await emu.stop()


async def test_function_call_round_trip(
    emulator: Emulator, client: ItanniXClient
) -> None:
    # Scripted before the session opens: the dashboard then has the function.
    emulator.assistant().add_turn(
        Turn(
            user_text="Kitchen light on",
            reply="Sure.",
            function_calls=[
                FunctionCallSpec("light_on", '{"room":"kitchen"}', call_id="call_1")
            ],
            reply_after_tools="Done, the result was {light_on}",
        )
    )
    received: list[FunctionCall] = []

    async def handler(call: FunctionCall) -> dict[str, Any]:
        received.append(call)
        return {"ok": True, "room": json.loads(call.arguments)["room"]}

    async with await RealtimeSession.open(client, function_handler=handler) as session:
        reply = await session.ask("Kitchen light on")
        text = await reply.text()
    assert received == [FunctionCall("call_1", "light_on", '{"room":"kitchen"}')]
    emu_session = emulator.sessions[-1]
    assert emu_session.function_outputs == {"call_1": '{"ok": true, "room": "kitchen"}'}
    assert text == 'Sure. Done, the result was {"ok": true, "room": "kitchen"}'
    outputs = [
        e
        for e in emu_session.received_events
        if e["type"] == "conversation.item.create"
        and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1  # exactly one output per call
    creates = [e for e in emu_session.received_events if e["type"] == "response.create"]
    assert len(creates) == 2  # the question, then one after the tool answered


async def test_parallel_calls_each_get_one_output(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.assistant().add_turn(
        Turn(
            reply="",
            function_calls=[
                FunctionCallSpec("light_on", '{"room":"hall"}', call_id="call_a"),
                FunctionCallSpec("light_off", '{"room":"attic"}', call_id="call_b"),
            ],
            reply_after_tools="{light_on} and {light_off}",
        )
    )
    both_running = asyncio.Event()
    running: set[str] = set()

    async def handler(call: FunctionCall) -> str:
        running.add(call.call_id)
        if len(running) == 2:
            both_running.set()
        # Each waits for the other: only passes if the calls run in parallel.
        await both_running.wait()
        return f"{call.name} ok"

    async with await RealtimeSession.open(client, function_handler=handler) as session:
        reply = await session.ask("lights")
        assert await reply.text() == "light_on ok and light_off ok"
    emu_session = emulator.sessions[-1]
    assert emu_session.function_outputs == {
        "call_a": "light_on ok",
        "call_b": "light_off ok",
    }
    outputs = [
        e["item"]["call_id"]
        for e in emu_session.received_events
        if e["type"] == "conversation.item.create"
        and e["item"]["type"] == "function_call_output"
    ]
    assert sorted(outputs) == ["call_a", "call_b"]


@pytest.mark.parametrize(
    ("handler_kind", "expected_error"),
    [
        ("raises", "RuntimeError: relay stuck"),
        ("times_out", "timed out"),
        ("missing", "No handler"),
    ],
)
async def test_failing_handler_still_answers_once(
    emulator: Emulator,
    client: ItanniXClient,
    handler_kind: str,
    expected_error: str,
) -> None:
    emulator.assistant().add_turn(
        Turn(
            reply="",
            function_calls=[FunctionCallSpec("garage_open", "{}", call_id="call_g")],
            reply_after_tools="Tool said {garage_open}",
        )
    )
    never = asyncio.Event()

    async def handler(call: FunctionCall) -> str:
        if handler_kind == "raises":
            raise RuntimeError("relay stuck")
        await never.wait()
        return "unreachable"

    session = await RealtimeSession.open(
        client,
        function_handler=None if handler_kind == "missing" else handler,
        function_timeout=0.3,
    )
    try:
        reply = await session.ask("open the garage")
        text = await reply.text()
    finally:
        await session.close()
    output = emulator.sessions[-1].function_outputs["call_g"]
    assert expected_error in json.loads(output)["error"]
    assert text == f"Tool said {output}"


async def test_close_while_handler_runs_sends_nothing(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.assistant().add_turn(
        Turn(reply="", function_calls=[FunctionCallSpec("slow", "{}", call_id="c")])
    )
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(call: FunctionCall) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    session = await RealtimeSession.open(client, function_handler=handler)
    reply = await session.ask("go slow")
    await started.wait()
    await session.close()
    assert cancelled.is_set()
    assert emulator.sessions[-1].function_outputs == {}
    assert reply.done
    assert reply.error is not None


async def test_audio_both_ways(
    emulator: Emulator, session: RealtimeSession, speech_pcm16k: bytes
) -> None:
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply="Sure, turning it on.")
    )
    assert not session.connection.microphone_attached  # idle: nothing encoded
    turn = await session.start_audio_turn()
    assert isinstance(turn, AudioTurn)
    assert session.connection.microphone_attached
    # Feed in 10 ms chunks as a satellite does; the track paces it onto the wire.
    for i in range(0, len(speech_pcm16k), 320):
        turn.feed_audio(speech_pcm16k[i : i + 320])
    session.connection.microphone.flush()

    audio: list[bytes] = []

    async def collect() -> None:
        audio.extend([chunk async for chunk in turn.reply_audio()])

    async with asyncio.timeout(30):
        collector = asyncio.create_task(collect())
        assert await turn.transcript() == "turn on the kitchen light"
        assert await turn.reply_text() == "Sure, turning it on."
        await collector

    emu_session = emulator.sessions[-1]
    assert emu_session.inbound_voiced_ms > 0
    assert emu_session.speech_started_count == 1
    assert turn.speech_started.is_set()
    assert turn.speech_stopped.is_set()
    pcm = b"".join(audio)
    assert all(len(chunk) == 640 for chunk in audio)
    assert len(pcm) > 16_000  # more than half a second of 16 kHz s16 voice
    assert rms(pcm) > 300  # a voice, not silence
    # Between turns the microphone is off the wire again.
    assert not session.connection.microphone_attached


async def test_cancel_cuts_the_spoken_reply(
    emulator: Emulator, session: RealtimeSession, speech_pcm16k: bytes
) -> None:
    emulator.assistant().add_turn(
        Turn(
            transcript="tell me a story",
            reply="Once upon a time there was a very long story that went on "
            "and on for many sentences, far longer than anyone wanted to hear.",
        )
    )
    turn = await session.start_audio_turn()
    turn.feed_audio(speech_pcm16k)
    got = 0
    async with asyncio.timeout(30):
        async for chunk in turn.reply_audio():
            if rms(chunk) > 300:
                got += 1
            if got >= 5:
                await turn.cancel()
        # reply_audio ended on its own after the cancel.
    assert turn.done
    assert turn.cancelled
    emu_session = emulator.sessions[-1]
    with session.connection.events() as events:
        if not any(
            e["type"] == "output_audio_buffer.cleared" for e in emu_session.sent_events
        ):
            await events.next_of({"output_audio_buffer.cleared"}, 5)
    types = [e["type"] for e in emu_session.received_events]
    assert "response.cancel" in types
    assert "output_audio_buffer.clear" in types
    # The session is still usable for the next turn.
    reply = await session.ask("still there?")
    assert await reply.text() == "I heard: still there?"


async def test_a_response_nobody_asked_for_gives_way_to_the_turn(
    emulator: Emulator, session: RealtimeSession
) -> None:
    """One response at a time: the stray one is cancelled, then the turn is answered."""
    emulator.assistant().add_turn(Turn(reply="A spoken answer that takes a while."))
    # A response the session did not ask for is running (e.g. started by another
    # client event): the service would refuse a second one.
    await session.connection.send({"type": "response.create"})
    reply = await session.ask("hello?")
    async with asyncio.timeout(10):
        assert await reply.text() == "I heard: hello?"
    (far,) = emulator.sessions
    types = [event["type"] for event in far.received_events]
    assert "response.cancel" in types
    assert types.index("response.cancel") < len(types) - 1 - types[::-1].index(
        "response.create"
    )
    statuses = [
        e["response"]["status"] for e in far.sent_events if e["type"] == "response.done"
    ]
    assert statuses == ["cancelled", "completed"]
    assert not session.closed


async def test_cancel_with_nothing_playing_does_not_fail_next_turn(
    emulator: Emulator, session: RealtimeSession
) -> None:
    turn = await session.start_audio_turn()
    with session.connection.events() as events:
        await turn.cancel()  # no response yet: the service answers with an error
        error = await events.next_of({"error"}, 5)
        assert error["error"]["code"] == "response_cancel_not_active"
        reply = await session.ask("are you there?")
        assert await reply.text() == "I heard: are you there?"


async def test_unknown_event_gets_an_error_event(session: RealtimeSession) -> None:
    with session.connection.events() as events:
        await session.connection.send({"type": "no.such.event"})
        error = await events.next_of({"error"}, 5)
    assert error["error"]["code"] == "unknown_event_type"
    assert not session.closed


async def test_detach_and_attach_microphone(
    emulator: Emulator, client: ItanniXClient
) -> None:
    """A detached microphone sends nothing; attached, it sends paced frames again."""
    async with RealtimeConnection(client) as connection:
        microphone = connection.microphone
        connection.detach_microphone()
        assert not connection.microphone_attached
        await asyncio.sleep(0.1)  # a frame in flight when detached may still go
        sent = microphone.frames_sent
        await asyncio.sleep(0.3)
        assert microphone.frames_sent == sent
        connection.attach_microphone()
        assert connection.microphone_attached
        await asyncio.sleep(0.3)
        # 20 ms frames: about 15 in 0.3 s on a loaded machine still more than 5.
        assert microphone.frames_sent - sent > 5
    assert emulator.is_enrolled(CLIENT_ID)


@pytest.mark.parametrize(
    "name",
    ["x" * 100_000, "light_on\nERROR forged log line", "", "näme"],
    ids=["huge", "newline", "empty", "non-ascii"],
)
async def test_a_call_by_no_function_name_is_answered_without_running(
    emulator: Emulator,
    client: ItanniXClient,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    """A name no declared function can have: one output, the handler never runs.

    Its name goes nowhere: not to the handler, not into the log.
    """
    emulator.assistant().add_turn(
        Turn(
            user_text="Do it",
            reply="",
            function_calls=[FunctionCallSpec(name, "{}", call_id="call_bad")],
            reply_after_tools="Could not do that.",
        )
    )
    received: list[FunctionCall] = []

    async def handler(call: FunctionCall) -> str:
        received.append(call)
        return "ran"

    async with await RealtimeSession.open(client, function_handler=handler) as session:
        reply = await session.ask("Do it")
        text = await reply.text()
    assert received == []
    emu_session = emulator.sessions[-1]
    assert set(emu_session.function_outputs) == {"call_bad"}
    assert "not a function name" in emu_session.function_outputs["call_bad"]
    assert text == "Could not do that."
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("custom_comp")]
    assert not [m[:80] for m in ours if len(m) > 500 or "forged" in m]
