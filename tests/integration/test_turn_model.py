"""The turn model as a Home Assistant user sees it.

The assistant's own tools next to Home Assistant's, a prompt that is current every turn,
an opening line that cannot hang an automation, sessions that expire (idle, mid-turn, or
renewed before they would), a service that repeats itself, and replies that fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT, Platform
from homeassistant.core import Context, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent, llm
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.itannix import opening
from custom_components.itannix.const import (
    DOMAIN,
    EVENT_FUNCTION_CALL,
    SERVICE_FUNCTION_CALL_RESPONSE,
)
from custom_components.itannix.entity import async_entity_id
from tests.emulator import EmulatedSession, Emulator, FunctionCallSpec, Turn
from tests.emulator.behaviour import device_tools
from tests.emulator.peer import LATE_DELTA

from .conftest import CLIENT_ID
from .helpers import (
    AGENT,
    async_setup_exposed_light,
    conversation_peers,
    enroll_elsewhere,
    say,
    speech,
    until,
)
from .satellite import RecordingPlayer, async_setup_satellites

OWN_INSTRUCTIONS = "You are the ItanniX test assistant."


async def _converse(
    hass: HomeAssistant,
    text: str,
    conversation_id: str | None = None,
    *,
    extra_system_prompt: str | None = None,
) -> conversation.ConversationResult:
    """Type ``text`` to the agent, as an automation's conversation.process does."""
    return await conversation.async_converse(
        hass,
        text,
        conversation_id,
        Context(),
        language="en",
        agent_id=AGENT,
        extra_system_prompt=extra_system_prompt,
    )


async def _set_options(
    hass: HomeAssistant, entry: ConfigEntry, options: dict[str, Any]
) -> None:
    """Save options through the options flow, as a user does (the entry reloads)."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


def _messages(session: EmulatedSession) -> list[tuple[str, str]]:
    """Every message the client put in the session's conversation: (role, text)."""
    return [
        (item["role"], "".join(part.get("text", "") for part in item["content"]))
        for event in session.received_events
        if event.get("type") == "conversation.item.create"
        and (item := event["item"]).get("type") == "message"
    ]


def _instructions_per_response(session: EmulatedSession) -> list[str | None]:
    """The instructions the client had set when it asked for each response."""
    current: str | None = None
    seen: list[str | None] = []
    for event in session.received_events:
        if event["type"] == "session.update" and isinstance(
            event["session"].get("instructions"), str
        ):
            current = event["session"]["instructions"]
        elif event["type"] == "response.create":
            seen.append(current)
    return seen


def _our_records(
    caplog: pytest.LogCaptureFixture, level: int
) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("custom_components.itannix") and r.levelno >= level
    ]


async def _assist_tool(hass: HomeAssistant, suffix: str) -> str:
    """The name Home Assistant offers one of the Assist API's tools under.

    Newer Home Assistant prefixes tool names with their API's.
    """
    api = await llm.async_get_api(
        hass,
        "assist",
        llm.LLMContext(
            platform=DOMAIN,
            context=Context(),
            language="en",
            assistant=conversation.DOMAIN,
            device_id=None,
        ),
    )
    return next(tool.name for tool in api.tools if tool.name.endswith(suffix))


# 1. The assistant's own tools survive "Control Home Assistant"


async def test_dashboard_tools_survive_control_home_assistant(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """With the Assist API chosen, the dashboard's functions still reach automations.

    The session carries the dashboard's built-in device functions, its own functions
    and Home Assistant's tools side by side; both kinds of call work in one
    conversation.
    """
    await async_setup_exposed_light(hass)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": [
                {
                    "alias": "Garage from the assistant",
                    "triggers": [
                        {
                            "trigger": "event",
                            "event_type": EVENT_FUNCTION_CALL,
                            "event_data": {"name": "open_garage"},
                        }
                    ],
                    "actions": [
                        {
                            "action": f"{DOMAIN}.{SERVICE_FUNCTION_CALL_RESPONSE}",
                            "data": {
                                "call_id": "{{ trigger.event.data.call_id }}",
                                "response": {"garage": "opening"},
                            },
                        }
                    ],
                }
            ]
        },
    )
    await hass.async_block_till_done()
    await _set_options(hass, config_entry, {CONF_LLM_HASS_API: ["assist"]})
    turn_on = await _assist_tool(hass, "HassTurnOn")
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    brain = emulator.assistant()
    # Scripted before the session opens: the dashboard's open_garage is one of the
    # assistant's tools in session.created. HassTurnOn is not: only Home Assistant
    # offers it.
    brain.add_turn(
        Turn(
            user_text="Open the garage",
            function_calls=[FunctionCallSpec(name="open_garage", call_id="call_g")],
            reply_after_tools="Garage: {open_garage}",
        )
    )
    brain.add_turn(
        Turn(
            user_text="Turn on the kitchen light",
            function_calls=[
                FunctionCallSpec(
                    name=turn_on,
                    arguments='{"name": "Kitchen light"}',
                    call_id="call_light",
                )
            ],
            reply_after_tools="The kitchen light is on.",
            dashboard_tools=False,
        )
    )

    result = await say(hass, "Open the garage")

    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(result) == 'Garage: {"garage": "opening"}'
    assert [(e.data["name"], e.data["call_id"]) for e in events] == [
        ("open_garage", "call_g")
    ]
    entity_id = async_entity_id(hass, config_entry, Platform.EVENT, "function_call")
    assert entity_id is not None
    assert hass.states.get(entity_id).attributes["name"] == "open_garage"
    (session,) = conversation_peers(emulator)
    assert session.refused_calls == []
    names = [tool["name"] for tool in session.tools]
    for own in [tool["name"] for tool in device_tools()] + ["open_garage"]:
        assert own in names
    assert turn_on in names
    assert len(names) == len(set(names))

    # A Home Assistant tool, in the same conversation and session.
    assert hass.states.get("light.kitchen_light").state == "off"
    result = await say(hass, "Turn on the kitchen light", result.conversation_id)

    assert speech(result) == "The kitchen light is on."
    assert hass.states.get("light.kitchen_light").state == "on"
    assert conversation_peers(emulator) == [session]
    assert session.refused_calls == []
    assert "Kitchen light" in session.function_outputs["call_light"]
    # Home Assistant ran it: automations were not asked.
    assert len(events) == 1


# 2. The prompt is current every turn


@pytest.mark.parametrize(
    "options",
    # Neither saves an LLM API: with one (a new entry's Assist) its own prompt and
    # GetDateTime tool stand in for the date line checked here.
    [{CONF_LLM_HASS_API: []}, {CONF_PROMPT: "Answer like a pirate."}],
    ids=["no_prompt_option", "prompt_option"],
)
async def test_prompt_is_refreshed_every_turn(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    options: dict[str, Any],
) -> None:
    """Each turn's extra prompt replaces the last; the assistant's own stays first."""
    await _set_options(hass, config_entry, options)
    first = await _converse(
        hass, "Hello", extra_system_prompt="The user is in the kitchen."
    )
    second = await _converse(
        hass,
        "And now?",
        first.conversation_id,
        extra_system_prompt="The user is in the garage.",
    )

    assert speech(second) == "I heard: And now?"
    (session,) = conversation_peers(emulator)
    at_first, at_second = _instructions_per_response(session)
    # Even without a prompt option, the caller's extra prompt reached the session.
    assert at_first is not None
    assert at_first.startswith(OWN_INSTRUCTIONS)
    assert "The user is in the kitchen." in at_first
    assert at_second is not None
    assert session.instructions == at_second
    assert at_second.startswith(OWN_INSTRUCTIONS)
    today = f"Today's date is {dt_util.now().strftime('%Y-%m-%d')}."
    assert today in at_second
    assert "The user is in the garage." in at_second
    assert at_second.index(today) < at_second.index("The user is in the garage.")
    assert "kitchen" not in at_second
    if CONF_PROMPT in options:
        assert (
            at_second.index(OWN_INSTRUCTIONS)
            < at_second.index("Answer like a pirate.")
            < at_second.index(today)
        )


@pytest.mark.parametrize(
    "options",
    # Without an LLM API or prompt option core's chat log is not asked to keep it.
    [{CONF_LLM_HASS_API: []}, {CONF_LLM_HASS_API: ["assist"]}],
    ids=["no_llm_api", "assist"],
)
async def test_extra_prompt_holds_for_the_conversations_later_turns(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    options: dict[str, Any],
) -> None:
    """A caller's extra prompt is kept until another replaces it, as core keeps it."""
    await _set_options(hass, config_entry, options)
    first = await _converse(
        hass, "Hello", extra_system_prompt="The user is in the kitchen."
    )
    second = await _converse(hass, "And now?", first.conversation_id)

    assert speech(second) == "I heard: And now?"
    (session,) = conversation_peers(emulator)
    at_first, at_second = _instructions_per_response(session)
    assert at_first is not None
    assert "The user is in the kitchen." in at_first
    assert at_second is not None
    assert at_second.startswith(OWN_INSTRUCTIONS)
    assert "The user is in the kitchen." in at_second


# 3. An opening line that never comes does not hang the automation


async def test_start_conversation_without_message_is_bounded(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The assistant never starts its opening: the action fails in time, cleanly."""
    speaker = RecordingPlayer("Office speaker")
    await async_setup_satellites(hass, players=[speaker])
    emulator.behaviour.think_time = 60.0
    monkeypatch.setattr(opening, "TURN_TIMEOUT", 1.0)

    started = time.monotonic()
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN,
            "start_conversation",
            {"entity_id": "media_player.office_speaker"},
            blocking=True,
        )
    assert time.monotonic() - started < 5
    assert err.value.translation_key == "turn_timeout"
    assert speaker.played == []
    # It did ask for the opening, and left nothing open.
    asked = [
        s
        for s in emulator.sessions
        if any(e["type"] == "response.create" for e in s.received_events)
    ]
    assert len(asked) == 1
    assert config_entry.runtime_data.sessions.diagnostics()["open"] == 0
    await until(lambda: asked[0].closed)


# 4. Sessions expire


async def test_session_expiring_while_idle(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The next turn is answered on a fresh session told the conversation so far.

    An expiry is expected: it is not reported as a drop.
    """
    caplog.set_level(logging.INFO, logger="custom_components.itannix")
    brain = emulator.assistant()
    brain.add_turn(Turn(user_text="My name is Sam.", reply="Nice to meet you, Sam."))
    # The emulator answers the replayed history and the question together.
    brain.add_turn(Turn(reply="Your name is Sam."))
    client = config_entry.runtime_data.client
    began = time.monotonic()
    first = await say(hass, "My name is Sam.")
    (expired,) = conversation_peers(emulator)

    await expired.expire()
    assert client.session_cap is not None
    assert 0 < client.session_cap <= time.monotonic() - began

    second = await say(hass, "What is my name?", first.conversation_id)

    assert second.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(second) == "Your name is Sam."
    peers = conversation_peers(emulator)
    assert len(peers) == 2
    assert peers[0] is expired
    fresh = peers[1]
    assert not fresh.expired
    assert _messages(fresh) == [
        ("user", "My name is Sam."),
        ("assistant", "Nice to meet you, Sam."),
        ("user", "What is my name?"),
    ]
    assert _our_records(caplog, logging.WARNING) == []
    assert any("expired" in r.getMessage() for r in _our_records(caplog, logging.INFO))


async def test_session_expiring_during_a_turn(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Expired before the reply started: the turn is asked again and answered once."""
    emulator.behaviour.think_time = 1.0
    brain = emulator.assistant()
    # The expired session consumed the first; the fresh session answers with the second.
    for _ in range(2):
        brain.add_turn(Turn(user_text="What time is it?", reply="It is time for tea."))

    turn = hass.async_create_task(say(hass, "What time is it?"))
    await until(
        lambda: any(
            e["type"] == "response.create"
            for s in conversation_peers(emulator)
            for e in s.received_events
        )
    )
    (expiring,) = conversation_peers(emulator)
    assert not [e for e in expiring.sent_events if e["type"] == "response.created"]
    await expiring.expire()
    result = await turn

    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(result) == "It is time for tea."
    assert brain.pending_turns == 0
    peers = conversation_peers(emulator)
    assert len(peers) == 2
    assert _messages(peers[1]) == [("user", "What time is it?")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert _our_records(caplog, logging.WARNING) == []


async def test_old_session_is_renewed_between_turns(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Near the longest the service keeps a session, the next turn opens a new one.

    The conversation is replayed to it and the old one is closed, instead of the
    service ending it mid-turn.
    """
    brain = emulator.assistant()
    brain.add_turn(Turn(user_text="My name is Sam.", reply="Hello Sam."))
    brain.add_turn(Turn(user_text="Still there?", reply="Yes."))
    brain.add_turn(Turn(reply="Your name is Sam."))
    client = config_entry.runtime_data.client
    first = await say(hass, "My name is Sam.")
    (old,) = conversation_peers(emulator)

    # Young enough: the session goes on.
    client.session_cap = 3600.0
    result = await say(hass, "Still there?", first.conversation_id)
    assert speech(result) == "Yes."
    assert conversation_peers(emulator) == [old]

    # Past 0.9 of what the service was seen to allow: renewed before the turn.
    client.session_cap = 1.0
    await asyncio.sleep(1.0)
    result = await say(hass, "What is my name?", first.conversation_id)

    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(result) == "Your name is Sam."
    peers = conversation_peers(emulator)
    assert len(peers) == 2
    assert peers[0] is old
    await until(lambda: old.closed)
    assert not old.expired
    assert _messages(peers[1]) == [
        ("user", "My name is Sam."),
        ("assistant", "Hello Sam."),
        ("user", "Still there?"),
        ("assistant", "Yes."),
        ("user", "What is my name?"),
    ]
    assert config_entry.runtime_data.sessions.diagnostics()["open"] == 1


# 5. A service that repeats itself


async def test_late_and_repeated_events_do_not_corrupt_replies(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Every response.done comes twice and a delta follows it: replies stay whole.

    One of the turns calls a function, so its first response is done while the turn
    goes on.
    """
    emulator.faults.repeat_response_done = True
    emulator.faults.late_delta_after_done = True
    brain = emulator.assistant()
    exchanges = [
        ("Good morning", "Good morning to you."),
        ("Stop the music", "The music is stopped."),
        ("Thank you", "You are welcome."),
    ]
    for question, answer in exchanges:
        if question == "Stop the music":
            brain.add_turn(
                Turn(
                    user_text=question,
                    function_calls=[FunctionCallSpec(name="stop_audio")],
                    reply_after_tools=answer,
                )
            )
        else:
            brain.add_turn(Turn(user_text=question, reply=answer))

    conversation_id: str | None = None
    for question, answer in exchanges:
        result = await say(hass, question, conversation_id)
        conversation_id = result.conversation_id
        assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
        assert speech(result) == answer

    (session,) = conversation_peers(emulator)
    # The faults really fired: four responses, each done twice and followed by a delta.
    dones = [e for e in session.sent_events if e["type"] == "response.done"]
    assert len(dones) == 8
    late = [e for e in session.sent_events if e.get("delta") == LATE_DELTA]
    assert len(late) == 4


# 6. Replies that fail


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("failed", "The server had an error while processing your request."),
        ("incomplete", "cut short (max_output_tokens)"),
    ],
    ids=["failed", "incomplete"],
)
async def test_failed_or_incomplete_reply_is_an_error_then_the_next_turn_works(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    status: str,
    reason: str,
) -> None:
    """The user reads why there is no answer; the conversation goes on."""
    brain = emulator.assistant()
    brain.add_turn(
        Turn(
            user_text="Tell me a story",
            reply="Once upon a time there was a lamp that never went out.",
            status=status,
        )
    )
    brain.add_turn(Turn(reply="Here is a shorter one."))

    result = await say(hass, "Tell me a story")

    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert speech(result).startswith("The assistant could not answer: ")
    assert reason in speech(result)

    again = await say(hass, "A shorter one, please", result.conversation_id)

    assert again.conversation_id == result.conversation_id
    assert again.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(again) == "Here is a shorter one."


# 7. Refused credentials outside a conversation turn


def _reauth_flows(hass: HomeAssistant) -> list[str]:
    return [
        flow["context"]["source"]
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    ]


async def test_refused_opening_line_starts_reauth(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """The secret was reset in the dashboard: start_conversation says so; reauth starts.

    Like a turn, the action's own opening line runs on a session of its own.
    """
    speaker = RecordingPlayer("Office speaker")
    await async_setup_satellites(hass, players=[speaker])
    emulator.reset_enrollment(CLIENT_ID)
    await enroll_elsewhere(emulator)

    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN,
            "start_conversation",
            {"entity_id": "media_player.office_speaker"},
            blocking=True,
        )
    assert err.value.translation_key == "turn_failed"
    assert speaker.played == []
    await hass.async_block_till_done()
    assert _reauth_flows(hass) == ["reauth"]


async def test_refused_text_to_speech_starts_reauth(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """An announcement the service refuses to synthesize fails, and reauth starts."""
    from homeassistant.components import tts

    emulator.reset_enrollment(CLIENT_ID)
    await enroll_elsewhere(emulator)
    stream = tts.async_create_stream(hass, "tts.itannix_voice", language="en")
    stream.async_set_message("The laundry is done.")

    with pytest.raises(HomeAssistantError):
        b"".join([chunk async for chunk in stream.async_stream_result()])
    await hass.async_block_till_done()
    assert _reauth_flows(hass) == ["reauth"]
