"""The turn model against a far end that sends exactly what the protocol allows.

Each test scripts the service's events in an order the Realtime protocol documents as
possible (``realtime-protocol-behaviours.md``): configuration after the channel opens,
transcripts after the reply, events of a cancelled response after the cancel, repeated
or stray events. What the caller sees must not depend on the kind order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import json
from typing import Any

import aiohttp
import pytest

from custom_components.itannix.realtime import (
    AudioTurn,
    Credentials,
    FunctionCall,
    IncompleteReplyError,
    ItanniXClient,
    ProtocolError,
    RealtimeSession,
    ServerError,
    SessionExpiredError,
    TranscriptionError,
)
from custom_components.itannix.realtime.calls import NOT_RUN
from custom_components.itannix.realtime.connection import DEFAULT_TRANSCRIPTION_MODEL
from tests.hostile import HostilePeer, HostileSession

from .conftest import CLIENT_ID, CLIENT_SECRET

CREDENTIALS = Credentials(CLIENT_ID, CLIENT_SECRET, workspace_key="wk-turns")
DASHBOARD_TOOL = {"type": "function", "name": "stop_audio", "parameters": {}}
HA_TOOL = {"type": "function", "name": "HassTurnOn", "parameters": {}}


@pytest.fixture
async def far_end(socket_enabled: None) -> AsyncIterator[HostilePeer]:
    async with HostilePeer() as peer:
        yield peer


@pytest.fixture
def client(far_end: HostilePeer, http: aiohttp.ClientSession) -> ItanniXClient:
    return ItanniXClient(http, far_end.url, CREDENTIALS, timeout=5.0)


async def until(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until ``condition()`` is truthy; return it."""
    async with asyncio.timeout(timeout):
        while not (value := condition()):
            await asyncio.sleep(0.01)
    return value


def sent(far: HostileSession, etype: str) -> list[dict[str, Any]]:
    return [event for event in far.received if event.get("type") == etype]


async def open_session(
    far_end: HostilePeer, client: ItanniXClient, **options: Any
) -> tuple[RealtimeSession, HostileSession]:
    session = await RealtimeSession.open(client, **options)
    far = await far_end.wait_session()
    far.answer_turns = False
    return session, far


def text_response(far: HostileSession, rid: str, text: str, **done: Any) -> None:
    """A complete text response ``rid`` saying ``text``."""
    far.send_event({"type": "response.created", "response": {"id": rid}})
    far.send_event(
        {
            "type": "response.text.delta",
            "response_id": rid,
            "item_id": f"item_{rid}",
            "delta": text,
        }
    )
    far.send_event(
        {
            "type": "response.done",
            "response": {"id": rid, "status": "completed", **done},
        }
    )


def send_error(
    far: HostileSession, code: str, message: str, event_id: str | None = None
) -> None:
    """An ``error`` event, about the client event ``event_id`` if given."""
    error = {"type": "invalid_request_error", "code": code, "message": message}
    if event_id is not None:
        error["event_id"] = event_id
    far.send_event({"type": "error", "error": error})


def call_item_done(far: HostileSession, rid: str, call_id: str, name: str) -> None:
    far.send_event(
        {
            "type": "response.output_item.done",
            "response_id": rid,
            "item": {
                "type": "function_call",
                "id": f"item_{call_id}",
                "call_id": call_id,
                "name": name,
                "arguments": "{}",
            },
        }
    )


async def answered_turn(
    session: RealtimeSession, far: HostileSession, rid: str, text: str
) -> str:
    """Ask, answer as ``rid``, return what the caller got."""
    creates = len(sent(far, "response.create"))
    reply = await session.ask("question")
    await until(lambda: len(sent(far, "response.create")) > creates)
    text_response(far, rid, text)
    async with asyncio.timeout(5):
        return await reply.text()


# -- configuration -------------------------------------------------------------------


async def test_tools_are_added_to_a_late_described_session(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """session.created comes after the channel opened: opening waits for it."""
    far_end.session_created = {"tools": [DASHBOARD_TOOL], "instructions": "Be brief."}
    far_end.created_delay = 0.5
    session, far = await open_session(far_end, client)
    try:
        await session.configure(tools=[HA_TOOL], context="The kitchen light is off.")
        update = (await until(lambda: sent(far, "session.update")))[-1]["session"]
        assert [tool["name"] for tool in update["tools"]] == [
            "stop_audio",
            "HassTurnOn",
        ]
        assert update["instructions"] == "Be brief.\n\nThe kitchen light is off."
        # The same again sends nothing; a new context (the time moved on) is sent.
        await session.configure(tools=[HA_TOOL], context="The kitchen light is off.")
        await session.configure(context="The kitchen light is on.")
        updates = await until(
            lambda: (
                len(sent(far, "session.update")) == 2 and sent(far, "session.update")
            )
        )
        assert updates[-1]["session"] == {
            "instructions": "Be brief.\n\nThe kitchen light is on."
        }
    finally:
        await session.close()


async def test_a_session_described_after_the_wait_still_keeps_its_tools(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """Configured before session.created: the tools are sent again with the union."""
    far_end.session_created = {"tools": [DASHBOARD_TOOL], "instructions": "Be brief."}
    far_end.created_delay = 1.0
    session, far = await open_session(far_end, client, session_created_timeout=0.1)
    try:
        await session.configure(tools=[HA_TOOL])
        first = (await until(lambda: sent(far, "session.update")))[0]["session"]
        assert [tool["name"] for tool in first["tools"]] == ["HassTurnOn"]
        updates = await until(
            lambda: len(sent(far, "session.update")) > 1 and sent(far, "session.update")
        )
        names = [tool["name"] for tool in updates[-1]["session"]["tools"]]
        assert names == ["stop_audio", "HassTurnOn"]
    finally:
        await session.close()


async def test_context_without_known_instructions_is_a_system_message(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """Instructions the service did not describe are never replaced."""
    far_end.session_created = {"tools": []}
    session, far = await open_session(far_end, client)
    try:
        await session.configure(context="Home Assistant context")
        item = (await until(lambda: sent(far, "conversation.item.create")))[0]["item"]
        assert item["role"] == "system"
        assert item["content"][0]["text"] == "Home Assistant context"
        assert not [
            u for u in sent(far, "session.update") if "instructions" in u["session"]
        ]
    finally:
        await session.close()


# -- events tied to their response ------------------------------------------------------


async def test_late_events_of_a_finished_turn_stay_out_of_the_next(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    session, far = await open_session(far_end, client)
    try:
        assert await answered_turn(session, far, "resp_1", "one") == "one"
        reply = await session.ask("second")
        await until(lambda: len(sent(far, "response.create")) == 2)
        # A late delta and a repeated done of turn 1, then a stray done without id.
        far.send_event(
            {"type": "response.text.delta", "response_id": "resp_1", "delta": "LATE"}
        )
        far.send_event(
            {
                "type": "response.done",
                "response": {"id": "resp_1", "status": "completed"},
            }
        )
        far.send_event({"type": "response.done", "response": {"status": "completed"}})
        await asyncio.sleep(0.3)
        assert not reply.done
        text_response(far, "resp_2", "two")
        async with asyncio.timeout(5):
            assert await reply.text() == "two"
    finally:
        await session.close()


async def test_a_call_of_a_cancelled_reply_is_not_run_nor_carried_over(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """Barge-in over a call: the call arrives after the cancel; one reply follows."""
    calls: list[FunctionCall] = []

    async def handler(call: FunctionCall) -> str:
        calls.append(call)
        return "ok"

    session, far = await open_session(far_end, client, function_handler=handler)
    try:
        reply = await session.ask("turn it on")
        await until(lambda: sent(far, "response.create"))
        far.send_event({"type": "response.created", "response": {"id": "resp_1"}})
        await until(lambda: reply.responses)
        await reply.cancel()
        await until(lambda: sent(far, "response.cancel"))
        # In flight when the cancel arrived: the call, then the cancelled done.
        call_item_done(far, "resp_1", "call_1", "light_on")
        far.send_event(
            {
                "type": "response.done",
                "response": {"id": "resp_1", "status": "cancelled"},
            }
        )
        assert await answered_turn(session, far, "resp_2", "Hello") == "Hello"
        outputs = await until(
            lambda: (
                sent(far, "conversation.item.create")
                and [
                    e["item"]
                    for e in sent(far, "conversation.item.create")
                    if e["item"]["type"] == "function_call_output"
                ]
            )
        )
        await asyncio.sleep(0.2)
        assert calls == []
        assert [(o["call_id"], json.loads(o["output"])) for o in outputs] == [
            ("call_1", {"error": NOT_RUN})
        ]
        assert len(sent(far, "response.create")) == 2  # turn 1 and turn 2, no extra
    finally:
        await session.close()


async def test_busy_service_is_asked_again_once_its_response_ended(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """conversation_already_has_active_response: wait for that response, ask again."""
    session, far = await open_session(far_end, client)
    try:
        reply = await session.ask("question")
        create = (await until(lambda: sent(far, "response.create")))[0]
        far.send_event({"type": "response.created", "response": {"id": "resp_x"}})
        send_error(
            far,
            "conversation_already_has_active_response",
            "A response is already in progress.",
            event_id=create["event_id"],
        )
        await until(lambda: sent(far, "response.cancel"))
        far.send_event(
            {
                "type": "response.done",
                "response": {"id": "resp_x", "status": "cancelled"},
            }
        )
        await until(lambda: len(sent(far, "response.create")) == 2)
        text_response(far, "resp_1", "answer")
        async with asyncio.timeout(5):
            assert await reply.text() == "answer"
    finally:
        await session.close()


@pytest.mark.parametrize(
    ("status", "details", "error"),
    [
        (
            "failed",
            {
                "type": "failed",
                "error": {"type": "server_error", "message": "Model overloaded"},
            },
            ServerError,
        ),
        (
            "incomplete",
            {"type": "incomplete", "reason": "max_output_tokens"},
            IncompleteReplyError,
        ),
    ],
)
async def test_a_failed_or_incomplete_response_ends_the_turn_clearly(
    far_end: HostilePeer,
    client: ItanniXClient,
    status: str,
    details: dict[str, Any],
    error: type[Exception],
) -> None:
    session, far = await open_session(far_end, client)
    try:
        reply = await session.ask("question")
        await until(lambda: sent(far, "response.create"))
        far.send_event({"type": "response.created", "response": {"id": "resp_1"}})
        far.send_event(
            {"type": "response.text.delta", "response_id": "resp_1", "delta": "Par"}
        )
        far.send_event(
            {
                "type": "response.done",
                "response": {
                    "id": "resp_1",
                    "status": status,
                    "status_details": details,
                },
            }
        )
        with pytest.raises(error) as raised:
            async with asyncio.timeout(5):
                await reply.text()
        assert ("overloaded" in str(raised.value)) or (
            "max_output_tokens" in str(raised.value)
        )
        # The session goes on.
        assert await answered_turn(session, far, "resp_2", "fine") == "fine"
    finally:
        await session.close()


# -- spoken turns ---------------------------------------------------------------------


def spoken_input(far: HostileSession, item: str) -> None:
    far.send_event({"type": "input_audio_buffer.speech_started", "item_id": item})
    far.send_event({"type": "input_audio_buffer.speech_stopped", "item_id": item})
    far.send_event({"type": "input_audio_buffer.committed", "item_id": item})


def spoken_reply(far: HostileSession, rid: str, text: str) -> None:
    far.send_event({"type": "response.created", "response": {"id": rid}})
    far.send_event(
        {"type": "response.audio_transcript.delta", "response_id": rid, "delta": text}
    )
    far.send_event(
        {"type": "response.done", "response": {"id": rid, "status": "completed"}}
    )


async def audio_session(
    far_end: HostilePeer, client: ItanniXClient
) -> tuple[RealtimeSession, HostileSession, AudioTurn]:
    session, far = await open_session(
        far_end, client, input_transcription_model=DEFAULT_TRANSCRIPTION_MODEL
    )
    turn = await session.start_audio_turn()
    return session, far, turn


async def test_a_transcript_after_the_reply_is_the_turns(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    session, far, turn = await audio_session(far_end, client)
    try:
        spoken_input(far, "item_in")
        spoken_reply(far, "resp_1", "It is on.")
        async with asyncio.timeout(5):
            assert await turn.reply_text() == "It is on."
        far.send_event(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": "item_in",
                "delta": "turn on ",
            }
        )
        await until(lambda: turn.partial_transcript == "turn on ")
        far.send_event(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_in",
                "transcript": "turn on the light",
            }
        )
        async with asyncio.timeout(5):
            assert await turn.transcript() == "turn on the light"
    finally:
        await session.close()


async def test_a_transcription_failure_ends_the_wait(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    session, far, turn = await audio_session(far_end, client)
    try:
        heard = asyncio.ensure_future(turn.transcript())
        spoken_input(far, "item_in")
        far.send_event(
            {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": "item_in",
                "error": {
                    "code": "audio_unintelligible",
                    "message": "Could not hear it",
                },
            }
        )
        with pytest.raises(TranscriptionError, match="Could not hear it"):
            async with asyncio.timeout(2):
                await heard
        # The assistant heard it all the same: its reply is the turn's.
        spoken_reply(far, "resp_1", "Sorry?")
        async with asyncio.timeout(5):
            assert await turn.reply_text() == "Sorry?"
    finally:
        await session.close()


async def test_a_late_transcript_of_the_previous_turn_is_not_the_next_ones(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    session, far, first = await audio_session(far_end, client)
    try:
        spoken_input(far, "item_1")
        spoken_reply(far, "resp_1", "One.")
        async with asyncio.timeout(5):
            await first.reply_text()
        second = await session.start_audio_turn()
        far.send_event(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_1",
                "transcript": "first words",
            }
        )
        spoken_input(far, "item_2")
        far.send_event(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_2",
                "transcript": "second words",
            }
        )
        async with asyncio.timeout(5):
            assert await first.transcript() == "first words"
            assert await second.transcript() == "second words"
    finally:
        await session.close()


# -- session lifetime -----------------------------------------------------------------


async def test_an_expired_session_says_so(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    session, far = await open_session(far_end, client)
    try:
        reply = await session.ask("question")
        await until(lambda: sent(far, "response.create"))
        send_error(
            far,
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
        )
        with pytest.raises(SessionExpiredError):
            async with asyncio.timeout(5):
                await reply.text()
        assert session.closed
        assert isinstance(session.connection.close_reason, SessionExpiredError)
        assert client.session_cap is not None
        assert 0 < client.session_cap <= session.age
    finally:
        await session.close()


async def test_an_error_for_another_request_leaves_the_turn_alone(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """Errors are matched to the client event that caused them."""
    session, far = await open_session(far_end, client)
    try:
        reply = await session.ask("question")
        await until(lambda: sent(far, "response.create"))
        send_error(far, "unknown_event_type", "x", event_id="evt_other")
        text_response(far, "resp_1", "answer")
        async with asyncio.timeout(5):
            assert await reply.text() == "answer"
        # The same error for its own request fails it.
        second = await session.ask("again")
        create = (
            await until(
                lambda: (
                    len(sent(far, "response.create")) == 2
                    and sent(far, "response.create")
                )
            )
        )[-1]
        send_error(far, "invalid_value", "bad", event_id=create["event_id"])
        with pytest.raises(ProtocolError):
            async with asyncio.timeout(5):
                await second.text()
    finally:
        await session.close()


async def test_the_voice_ends_when_the_whole_buffer_stops(
    far_end: HostilePeer, client: ItanniXClient
) -> None:
    """``output_audio_buffer.stopped`` naming no response ends the voice playing."""
    session, far, turn = await audio_session(far_end, client)
    try:
        spoken_input(far, "item_in")
        far.send_event({"type": "response.created", "response": {"id": "resp_1"}})
        far.send_event({"type": "output_audio_buffer.started", "response_id": "resp_1"})
        far.send_event(
            {
                "type": "response.done",
                "response": {"id": "resp_1", "status": "completed"},
            }
        )
        audio = asyncio.ensure_future(_drain(turn))
        await asyncio.sleep(0.5)
        assert not audio.done()  # still playing after response.done
        far.send_event({"type": "output_audio_buffer.stopped"})
        async with asyncio.timeout(3):
            await audio
        assert not turn.audio_open
    finally:
        await session.close()


async def _drain(turn: AudioTurn) -> None:
    async for _chunk in turn.reply_audio():
        pass
