"""Typing to the assistant in Assist: replies, context, tools and every failure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest.mock import patch

from homeassistant.components import conversation
from homeassistant.components.conversation import AssistantContent
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import entity_registry as er, intent, llm
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.itannix.compat import stored_chat_log
from custom_components.itannix.const import CONF_IDLE_TIMEOUT, DOMAIN
from tests.emulator import EmulatedSession, Emulator, FunctionCallSpec, Turn

from .conftest import CLIENT_ID, async_add_entry
from .helpers import (
    AGENT,
    async_setup_exposed_light,
    conversation_peers,
    enroll_elsewhere,
    say,
    speech,
    until,
)


def _user_texts(session: EmulatedSession) -> list[str]:
    return [
        part["text"]
        for event in session.received_events
        if event.get("type") == "conversation.item.create"
        and event["item"].get("role") == "user"
        for part in event["item"]["content"]
    ]


async def test_agent_entity(hass: HomeAssistant, config_entry: ConfigEntry) -> None:
    """The agent is an entity of the entry's service device, with a translated name."""
    entity = er.async_get(hass).async_get(AGENT)
    assert entity is not None
    assert entity.config_entry_id == config_entry.entry_id
    assert entity.translation_key == "assistant"
    assert hass.states.get(AGENT) is not None


async def test_typed_message_gets_the_assistants_reply(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """What the assistant answers is what the user reads."""
    emulator.assistant("default").add_turn(
        Turn(user_text="What is the capital of France?", reply="Paris, of course.")
    )
    result = await say(hass, "What is the capital of France?")
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(result) == "Paris, of course."
    assert not result.continue_conversation
    # A typed turn asks for a text reply.
    session = conversation_peers(emulator)[0]
    creates = [e for e in session.received_events if e["type"] == "response.create"]
    assert creates[0]["response"]["modalities"] == ["text"]


async def test_same_conversation_keeps_its_session(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Follow-ups reuse the conversation's session (its context); others get theirs."""
    first = await say(hass, "My name is Sam.")
    second = await say(hass, "What is my name?", first.conversation_id)
    assert second.conversation_id == first.conversation_id
    assert speech(second) == "I heard: What is my name?"
    assert len(conversation_peers(emulator)) == 1
    assert _user_texts(conversation_peers(emulator)[0]) == [
        "My name is Sam.",
        "What is my name?",
    ]

    other = await say(hass, "Hello")
    assert other.conversation_id != first.conversation_id
    assert len(conversation_peers(emulator)) == 2


async def test_idle_session_closes_and_reopens(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """After the idle time the session is closed; the next turn opens a new one."""
    # Shorter than Home Assistant's own five minutes, so the chat log outlives it.
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_IDLE_TIMEOUT: 60}
    )
    await hass.async_block_till_done()
    result = await say(hass, "Hello")
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=61))
    await hass.async_block_till_done()
    await until(lambda: conversation_peers(emulator)[0].closed)

    await say(hass, "Still there?", result.conversation_id)
    assert len(conversation_peers(emulator)) == 2
    # The new session was told the conversation so far, so its context is not lost.
    assert _user_texts(conversation_peers(emulator)[1]) == ["Hello", "Still there?"]


async def test_question_keeps_the_satellite_listening(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """An answer that asks something sets continue_conversation."""
    emulator.assistant("default").add_turn(
        Turn(user_text="Set a timer", reply="For how long?")
    )
    result = await say(hass, "Set a timer")
    assert result.continue_conversation


async def _enable_assist(hass: HomeAssistant, entry: ConfigEntry) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: ["assist"]}
    )
    await hass.async_block_till_done()


async def _turn_on_the_kitchen_light(hass: HomeAssistant, emulator: Emulator) -> None:
    """Type "turn on the kitchen light"; the scripted assistant calls HassTurnOn."""
    assert hass.states.get("light.kitchen_light").state == "off"

    # Like a model, the scripted assistant calls the tool by the name it is offered
    # (newer Home Assistant prefixes tool names with their API's).
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
    turn_on = next(tool.name for tool in api.tools if tool.name.endswith("HassTurnOn"))
    emulator.assistant("default").add_turn(
        Turn(
            user_text="Turn on the kitchen light",
            reply="Turning on the kitchen light.",
            function_calls=[
                FunctionCallSpec(
                    name=turn_on,
                    arguments='{"name": "Kitchen light"}',
                    call_id="call_light",
                )
            ],
            reply_after_tools="The kitchen light is on.",
        )
    )
    result = await say(hass, "Turn on the kitchen light")

    assert hass.states.get("light.kitchen_light").state == "on"
    # The answer after the tool call, from its first word (no space carried over).
    assert speech(result) == "The kitchen light is on."
    chat_log = stored_chat_log(hass, result.conversation_id)
    assert chat_log is not None
    assert [c.content for c in chat_log.content if isinstance(c, AssistantContent)] == [
        "Turning on the kitchen light.",
        "The kitchen light is on.",
    ]
    session = conversation_peers(emulator)[-1]
    # Home Assistant's tools were offered next to the assistant's own.
    offered = {
        tool["name"]
        for event in session.received_events
        if event["type"] == "session.update"
        for tool in event["session"].get("tools", [])
    }
    assert turn_on in offered
    # The tool's result went back as the call's one output.
    assert "Kitchen light" in session.function_outputs["call_light"]
    assert list(session.function_outputs) == ["call_light"]


async def test_llm_tool_call_turns_on_a_light(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """With Assist selected, the assistant's HassTurnOn call really turns on a light."""
    await async_setup_exposed_light(hass)
    await _enable_assist(hass, config_entry)
    await _turn_on_the_kitchen_light(hass, emulator)


async def test_new_entry_controls_home_assistant_out_of_the_box(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """A freshly set-up entry has Assist selected: no options visit is needed."""
    await async_setup_exposed_light(hass)
    entry = await async_add_entry(hass, emulator)
    assert entry.options == {CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]}
    await _turn_on_the_kitchen_light(hass, emulator)


async def test_revoked_secret_reports_and_starts_reauth(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """A 401 mid-use is explained in the conversation and a reauth flow starts."""
    emulator.reset_enrollment(CLIENT_ID)
    await enroll_elsewhere(emulator)
    result = await say(hass, "Hello")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert "rejected this client's credentials" in speech(result)
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"status": 503}, "could not answer"),
        ({"malformed_sdp": True}, "could not answer"),
        ({"drop_channel_mid_reply": True}, "Could not reach ItanniX"),
        ({"close_peer_after_open": True}, "Could not reach ItanniX"),
    ],
)
async def test_service_failures_become_error_responses(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    fault: dict[str, Any],
    message: str,
) -> None:
    """Whatever breaks, the user reads a translated error, and the next turn works."""
    if "status" in fault:
        emulator.faults.status["sessions"] = fault["status"]
    else:
        for name, value in fault.items():
            setattr(emulator.faults, name, value)
    result = await say(hass, "Hello")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert message in speech(result)

    emulator.faults.status.clear()
    for name in ("malformed_sdp", "drop_channel_mid_reply", "close_peer_after_open"):
        setattr(emulator.faults, name, False)
    result = await say(hass, "Hello again", result.conversation_id)
    assert speech(result) == "I heard: Hello again"


async def test_turn_timeout(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """A service that never answers ends in an error, not a hung Assist dialog."""
    emulator.faults.no_answer = True
    with patch("custom_components.itannix.conversation.TURN_TIMEOUT", 0.5):
        result = await say(hass, "Hello")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert "took too long" in speech(result)


async def test_unload_closes_sessions(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Unloading the entry closes every realtime session it had open."""
    await say(hass, "Hello")
    await say(hass, "Hello too")
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    await until(lambda: all(s.closed for s in conversation_peers(emulator)))
