"""Function calls drive Home Assistant: events, automations, answers, device functions.

The emulated assistant calls functions during typed turns; automations in the test Home
Assistant act on them and answer with the ``itannix.function_call_response`` action.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
import importlib.util
import json
import logging
from pathlib import Path
import shutil
from typing import Any

from homeassistant.components import conversation
from homeassistant.components.device_automation import (
    DeviceAutomationType,
    async_get_device_automations,
)
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr, intent
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.itannix.const import (
    CONF_FUNCTION_TIMEOUT,
    DOMAIN,
    EVENT_FUNCTION_CALL,
    SERVICE_FUNCTION_CALL_RESPONSE,
)
from custom_components.itannix.entity import async_entity_id
from tests.emulator import EmulatedSession, Emulator, FunctionCallSpec, Turn

from .helpers import say, speech, template_light, until

PASSED_ON = "passed on to Home Assistant"
REPO_ROOT = Path(__file__).parents[2]


def _session(emulator: Emulator) -> EmulatedSession:
    """The realtime session that carried the conversation (not the enrollment's)."""
    return [s for s in emulator.sessions if s.has_peer and s.received_events][-1]


def _outputs(session: EmulatedSession) -> dict[str, list[str]]:
    """Every function_call_output the service received, per call id."""
    outputs: dict[str, list[str]] = defaultdict(list)
    for event in session.received_events:
        item = event.get("item") or {}
        if (
            event.get("type") == "conversation.item.create"
            and item.get("type") == "function_call_output"
        ):
            outputs[item["call_id"]].append(item["output"])
    return dict(outputs)


def _call_turn(text: str, *calls: FunctionCallSpec, after: str) -> Turn:
    return Turn(user_text=text, function_calls=list(calls), reply_after_tools=after)


@pytest.fixture
async def short_wait(hass: HomeAssistant, config_entry: ConfigEntry) -> ConfigEntry:
    """The entry, with automations given 1 s to answer (set in the options flow)."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_FUNCTION_TIMEOUT: 1}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert config_entry.options[CONF_FUNCTION_TIMEOUT] == 1
    return config_entry


async def _setup_home(hass: HomeAssistant) -> None:
    """A light (really a template light over a switchable helper) and a sensor."""
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {"living_room": {}, "garage": {}}},
    )
    assert await async_setup_component(
        hass,
        "template",
        {
            "template": [
                {
                    "sensor": [
                        {
                            "name": "Outdoor temperature",
                            "state": "21.5",
                            "unit_of_measurement": "°C",
                        }
                    ],
                    "light": [template_light("Living room light", "living_room")],
                }
            ]
        },
    )
    await hass.async_block_till_done()


async def _automations(hass: HomeAssistant, *automations: dict[str, Any]) -> None:
    assert await async_setup_component(
        hass, "automation", {"automation": list(automations)}
    )
    await hass.async_block_till_done()


def _on_call(name: str) -> dict[str, Any]:
    return {
        "trigger": "event",
        "event_type": EVENT_FUNCTION_CALL,
        "event_data": {"name": name},
    }


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": f"{DOMAIN}.{SERVICE_FUNCTION_CALL_RESPONSE}",
        "data": {"call_id": "{{ trigger.event.data.call_id }}", "response": response},
    }


async def test_automation_acts_and_its_answer_reaches_the_assistant(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """An automation turns on a light and answers with a sensor value.

    The call fires an event; the answer is the call's one output, used in the reply.
    """
    await _setup_home(hass)
    await _automations(
        hass,
        {
            "alias": "Movie night",
            "triggers": [_on_call("start_movie_night")],
            "actions": [
                {
                    "action": "light.turn_on",
                    "target": {"entity_id": "light.living_room_light"},
                },
                _answer(
                    {
                        "temperature": "{{ states('sensor.outdoor_temperature') }}",
                        "volume": "{{ trigger.event.data.arguments.volume }}",
                    }
                ),
            ],
        },
    )
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    emulator.assistant("default").add_turn(
        _call_turn(
            "Start movie night",
            FunctionCallSpec(
                name="start_movie_night", arguments='{"volume": 3}', call_id="call_mn"
            ),
            after="Enjoy! Outside: {start_movie_night}",
        )
    )

    result = await say(hass, "Start movie night")

    assert hass.states.get("light.living_room_light").state == "on"
    outputs = _outputs(_session(emulator))
    assert list(outputs) == ["call_mn"]
    assert len(outputs["call_mn"]) == 1
    answer = json.loads(outputs["call_mn"][0])
    assert str(answer["temperature"]) == "21.5"
    assert str(answer["volume"]) == "3"
    assert "21.5" in speech(result)
    # The event carries what an automation needs, arguments parsed.
    assert len(events) == 1
    assert events[0].data == {
        "name": "start_movie_night",
        "arguments": {"volume": 3},
        "call_id": "call_mn",
        "conversation_id": result.conversation_id,
        "device_id": None,
        "entry_id": config_entry.entry_id,
    }


async def test_blueprint_runs_actions_and_answers(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry, tmp_path: Path
) -> None:
    """The blueprint shipped in the repository works as its description says."""
    blueprint = tmp_path / "blueprints" / "automation" / "itannix"
    blueprint.mkdir(parents=True)
    shutil.copy(
        REPO_ROOT / "blueprints" / "automation" / "itannix" / "function_call.yaml",
        blueprint / "function_call.yaml",
    )
    hass.config.config_dir = str(tmp_path)
    await _setup_home(hass)
    await _automations(
        hass,
        {
            "alias": "Garage from the assistant",
            "use_blueprint": {
                "path": "itannix/function_call.yaml",
                "input": {
                    "function_name": "open_garage",
                    "actions": [
                        {
                            "action": "input_boolean.turn_on",
                            "target": {"entity_id": "input_boolean.garage"},
                        }
                    ],
                    "answer": "Opening. It is {{ states('sensor.outdoor_temperature') }}"
                    " degrees outside.",
                },
            },
        },
    )
    emulator.assistant("default").add_turn(
        _call_turn(
            "Open the garage",
            FunctionCallSpec(name="open_garage", call_id="call_g"),
            after="{open_garage}",
        )
    )

    result = await say(hass, "Open the garage")

    assert hass.states.get("input_boolean.garage").state == "on"
    outputs = _outputs(_session(emulator))
    assert json.loads(outputs["call_g"][0]) == {
        "result": "Opening. It is 21.5 degrees outside."
    }
    assert "21.5 degrees" in speech(result)


async def test_event_entity_fires_for_every_call(
    hass: HomeAssistant, emulator: Emulator, short_wait: ConfigEntry
) -> None:
    """The "Function call" event entity fires with each call's data, one event type.

    An automation built in the UI on its only type, "Any function", runs for every
    call; one that names a function in a condition runs for that one.
    """
    entity_id = async_entity_id(hass, short_wait, Platform.EVENT, "function_call")
    assert entity_id is not None
    state = hass.states.get(entity_id)
    assert state.state == "unknown"
    assert state.attributes["event_types"] == ["function_call"]
    assert state.attributes["friendly_name"] == "ItanniX Function call"
    any_trigger: dict[str, Any] = (
        # What the automation editor builds for "Event received" (2026.x).
        {
            "trigger": "event.received",
            "target": {"entity_id": entity_id},
            "options": {"event_type": ["function_call"]},
        }
        if importlib.util.find_spec("homeassistant.components.event.trigger")
        else {"trigger": "state", "entity_id": entity_id, "not_from": "unavailable"}
    )
    await _automations(
        hass,
        {
            "alias": "Any function",
            "triggers": [any_trigger],
            "actions": [{"event": "itannix_test_any"}],
        },
        {
            "alias": "Watering only",
            "triggers": [
                {"trigger": "state", "entity_id": entity_id, "not_from": "unavailable"}
            ],
            "conditions": [
                {
                    "condition": "state",
                    "entity_id": entity_id,
                    "attribute": "name",
                    "state": "water_plants",
                }
            ],
            "actions": [{"event": "itannix_test_watering"}],
        },
    )
    runs = async_capture_events(hass, "automation_triggered")

    for name, call_id in (("water_plants", "call_w"), ("feed_cat", "call_c")):
        emulator.assistant("default").add_turn(
            _call_turn(
                name,
                FunctionCallSpec(name=name, arguments='{"zone": 2}', call_id=call_id),
                after="{" + name + "}",
            )
        )
    result = await say(hass, "water_plants")
    state = hass.states.get(entity_id)
    assert state.state not in ("unknown", "unavailable")
    assert state.attributes["event_type"] == "function_call"
    assert state.attributes["event_types"] == ["function_call"]
    assert state.attributes["name"] == "water_plants"
    assert state.attributes["arguments"] == {"zone": 2}
    assert state.attributes["call_id"] == "call_w"
    assert state.attributes["conversation_id"] == result.conversation_id
    assert state.attributes["entry_id"] == short_wait.entry_id
    await say(hass, "feed_cat", result.conversation_id)
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).attributes["name"] == "feed_cat"
    names = [run.data["name"] for run in runs]
    assert names.count("Any function") == 2
    assert names.count("Watering only") == 1


async def test_device_trigger_runs_for_its_function(
    hass: HomeAssistant, emulator: Emulator, short_wait: ConfigEntry
) -> None:
    """The ItanniX device offers "Assistant called a function".

    Filtered by name, it runs for that function only; two calls in one response are
    each answered once.
    """
    (device,) = dr.async_entries_for_config_entry(
        dr.async_get(hass), short_wait.entry_id
    )
    triggers = await async_get_device_automations(
        hass, DeviceAutomationType.TRIGGER, [device.id]
    )
    assert {
        "platform": "device",
        "domain": DOMAIN,
        "device_id": device.id,
        "type": "function_called",
    } in [
        {key: trigger[key] for key in ("platform", "domain", "device_id", "type")}
        for trigger in triggers[device.id]
    ]
    await _setup_home(hass)
    await _automations(
        hass,
        {
            "alias": "Garage by device trigger",
            "triggers": [
                {
                    "trigger": "device",
                    "domain": DOMAIN,
                    "device_id": device.id,
                    "type": "function_called",
                    "function": "open_garage",
                }
            ],
            "actions": [
                {
                    "action": "input_boolean.turn_on",
                    "target": {"entity_id": "input_boolean.garage"},
                },
                _answer({"garage": "opening"}),
            ],
        },
    )
    emulator.assistant("default").add_turn(
        _call_turn(
            "Open the garage and dim the lights",
            FunctionCallSpec(name="open_garage", call_id="call_g"),
            FunctionCallSpec(name="dim_lights", call_id="call_d"),
            after="{open_garage} / {dim_lights}",
        )
    )

    result = await say(hass, "Open the garage and dim the lights")

    assert hass.states.get("input_boolean.garage").state == "on"
    outputs = _outputs(_session(emulator))
    assert json.loads(outputs["call_g"][0]) == {"garage": "opening"}
    # The other function matched no trigger: it got the default output.
    assert PASSED_ON in outputs["call_d"][0]
    assert {call_id: len(out) for call_id, out in outputs.items()} == {
        "call_g": 1,
        "call_d": 1,
    }
    assert '"garage": "opening"' in speech(result)


async def test_parallel_calls_each_get_their_own_answer(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Two calls of one response wait side by side; each gets its own answer once."""
    await _automations(
        hass,
        {
            "alias": "Answer any call",
            "mode": "parallel",
            "triggers": [
                {"trigger": "event", "event_type": EVENT_FUNCTION_CALL},
            ],
            "actions": [_answer({"echo": "{{ trigger.event.data.arguments.n }}"})],
        },
    )
    emulator.assistant("default").add_turn(
        _call_turn(
            "Two things",
            FunctionCallSpec(name="first", arguments='{"n": 1}', call_id="call_1"),
            FunctionCallSpec(name="second", arguments='{"n": 2}', call_id="call_2"),
            after="{first} and {second}",
        )
    )

    result = await say(hass, "Two things")

    outputs = _outputs(_session(emulator))
    assert {call_id: len(out) for call_id, out in outputs.items()} == {
        "call_1": 1,
        "call_2": 1,
    }
    assert str(json.loads(outputs["call_1"][0])["echo"]) == "1"
    assert str(json.loads(outputs["call_2"][0])["echo"]) == "2"
    assert speech(result).count("echo") == 2


async def test_invalid_arguments_are_refused_and_nothing_fires(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Arguments that are not a JSON object get an error output; no event fires."""
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    emulator.assistant("default").add_turn(
        _call_turn(
            "Broken call",
            FunctionCallSpec(
                name="set_scene", arguments='{"scene": "movie"', call_id="call_bad"
            ),
            FunctionCallSpec(name="set_mood", arguments="[1, 2]", call_id="call_list"),
            after="{set_scene} / {set_mood}",
        )
    )

    result = await say(hass, "Broken call")

    outputs = _outputs(_session(emulator))
    assert "not valid JSON" in json.loads(outputs["call_bad"][0])["error"]
    assert "must be a JSON object" in json.loads(outputs["call_list"][0])["error"]
    assert events == []
    assert "not valid JSON" in speech(result)
    entity_id = async_entity_id(hass, config_entry, Platform.EVENT, "function_call")
    assert hass.states.get(entity_id).state == "unknown"


async def test_no_automation_gets_the_default_output(
    hass: HomeAssistant, emulator: Emulator, short_wait: ConfigEntry
) -> None:
    """Nobody answers: after the wait the assistant hears it was passed on."""
    emulator.assistant("default").add_turn(
        _call_turn(
            "Order pizza",
            FunctionCallSpec(name="order_pizza", call_id="call_p"),
            after="Result: {order_pizza}",
        )
    )

    result = await say(hass, "Order pizza")

    outputs = _outputs(_session(emulator))
    assert len(outputs["call_p"]) == 1
    assert PASSED_ON in outputs["call_p"][0]
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert PASSED_ON in speech(result)


async def test_invalid_response_still_gets_one_output(
    hass: HomeAssistant,
    emulator: Emulator,
    short_wait: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An automation whose answer is not an object fails visibly.

    The call still gets exactly one output: the default.
    """
    await _automations(
        hass,
        {
            "alias": "Bad answer",
            "triggers": [_on_call("get_weather")],
            "actions": [
                {
                    "action": f"{DOMAIN}.{SERVICE_FUNCTION_CALL_RESPONSE}",
                    "data": {
                        "call_id": "{{ trigger.event.data.call_id }}",
                        "response": "sunny",
                    },
                }
            ],
        },
    )
    emulator.assistant("default").add_turn(
        _call_turn(
            "Weather?",
            FunctionCallSpec(name="get_weather", call_id="call_w"),
            after="{get_weather}",
        )
    )

    await say(hass, "Weather?")

    outputs = _outputs(_session(emulator))
    assert len(outputs["call_w"]) == 1
    assert PASSED_ON in outputs["call_w"][0]
    assert "Bad answer" in caplog.text
    assert "response" in caplog.text


async def test_late_or_repeated_response_is_dropped(
    hass: HomeAssistant,
    emulator: Emulator,
    short_wait: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A response after the default output was sent is logged and refused."""
    caplog.set_level(logging.INFO, logger="custom_components.itannix")
    emulator.assistant("default").add_turn(
        _call_turn(
            "Slow one",
            FunctionCallSpec(name="slow_thing", call_id="call_slow"),
            after="{slow_thing}",
        )
    )
    await say(hass, "Slow one")

    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            SERVICE_FUNCTION_CALL_RESPONSE,
            {"call_id": "call_slow", "response": {"done": True}},
            blocking=True,
        )
    assert err.value.translation_key == "unknown_call_id"
    assert "call_slow came after its wait ended; dropped" in caplog.text
    outputs = _outputs(_session(emulator))
    assert len(outputs["call_slow"]) == 1
    assert PASSED_ON in outputs["call_slow"][0]


async def test_second_answer_to_one_call_is_refused(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the first answer counts; the automation's second one fails visibly."""
    await _automations(
        hass,
        {
            "alias": "Answers twice",
            "triggers": [_on_call("count")],
            "actions": [_answer({"n": 1}), _answer({"n": 2})],
        },
    )
    emulator.assistant("default").add_turn(
        _call_turn(
            "Count",
            FunctionCallSpec(name="count", call_id="call_c"),
            after="{count}",
        )
    )

    await say(hass, "Count")

    outputs = _outputs(_session(emulator))
    assert outputs["call_c"] == ['{"n": 1}']
    await until(lambda: "call_c is waiting for an answer" in caplog.text)


async def _start_waiting_call(
    hass: HomeAssistant, emulator: Emulator
) -> tuple[asyncio.Task[conversation.ConversationResult], str]:
    """Start a turn whose call waits for an answer; return it once the call fired."""
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    emulator.assistant("default").add_turn(
        _call_turn(
            "Wait for it",
            FunctionCallSpec(name="wait_for_it", call_id="call_wait"),
            after="{wait_for_it}",
        )
    )
    turn = hass.async_create_task(say(hass, "Wait for it"))
    await until(lambda: len(events) == 1)
    return turn, events[0].data["conversation_id"]


async def _assert_nothing_waits(
    hass: HomeAssistant, emulator: Emulator, entry: ConfigEntry
) -> None:
    session = _session(emulator)
    await until(lambda: session.closed)
    assert _outputs(session) == {}
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN,
            SERVICE_FUNCTION_CALL_RESPONSE,
            {"call_id": "call_wait", "response": {"late": True}},
            blocking=True,
        )


async def test_session_closing_while_a_call_waits(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """The session ends during the wait: nothing is sent, nothing is left waiting."""
    functions = config_entry.runtime_data.functions
    turn, conversation_id = await _start_waiting_call(hass, emulator)
    assert functions.waiting == 1

    await config_entry.runtime_data.sessions.async_close(conversation_id)
    result = await turn

    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert functions.waiting == 0
    await _assert_nothing_waits(hass, emulator, config_entry)


async def test_unloading_while_a_call_waits(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Unloading the entry ends its sessions and every wait with them."""
    functions = config_entry.runtime_data.functions
    turn, _conversation_id = await _start_waiting_call(hass, emulator)

    assert await hass.config_entries.async_unload(config_entry.entry_id)
    result = await turn

    assert config_entry.state is ConfigEntryState.NOT_LOADED
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert functions.waiting == 0
    await _assert_nothing_waits(hass, emulator, config_entry)


async def test_device_functions_in_a_typed_conversation(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Built-in device functions say a typed conversation has no device.

    They are not handed to automations.
    """
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    emulator.assistant("default").add_turn(
        _call_turn(
            "Louder and then quiet",
            FunctionCallSpec(
                name="set_device_volume",
                arguments='{"volume_level": 30}',
                call_id="call_set",
            ),
            FunctionCallSpec(
                name="adjust_device_volume",
                arguments='{"action": "increase"}',
                call_id="call_adjust",
            ),
            FunctionCallSpec(name="quiet_device", call_id="call_quiet"),
            FunctionCallSpec(name="stop_audio", call_id="call_stop"),
            after="{set_device_volume}",
        )
    )

    result = await say(hass, "Louder and then quiet")

    outputs = _outputs(_session(emulator))
    for call_id in ("call_set", "call_adjust", "call_quiet"):
        assert len(outputs[call_id]) == 1
        assert "typed conversation" in json.loads(outputs[call_id][0])["error"]
    assert "Nothing is playing" in json.loads(outputs["call_stop"][0])["result"]
    assert events == []
    assert "typed conversation" in speech(result)
