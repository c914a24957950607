"""Built-in device functions on a voice satellite's device.

A spoken turn dispatches its calls with the satellite's device in the call context; here
the dispatcher gets such a context directly, and a real media player (a universal player
whose volume and mute are helpers) on the satellite's device takes the commands.
"""

from __future__ import annotations

import json
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
)

from custom_components.itannix.const import EVENT_FUNCTION_CALL
from custom_components.itannix.functions import CallContext
from custom_components.itannix.realtime import FunctionCall

PLAYER = "media_player.kitchen_speaker"


@pytest.fixture
async def satellite(hass: HomeAssistant) -> str:
    """A satellite device with a media player; returns the device id."""
    assert await async_setup_component(
        hass,
        "input_number",
        {"input_number": {"volume": {"min": 0, "max": 1, "step": 0.01}}},
    )
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"muted": {}}}
    )
    assert await async_setup_component(
        hass,
        "media_player",
        {
            "media_player": [
                {
                    "platform": "universal",
                    "name": "Kitchen speaker",
                    "unique_id": "kitchen_speaker",
                    "state_template": "{{ 'playing' if states('input_number.volume')"
                    " | float(0) > 0 else 'idle' }}",
                    "attributes": {
                        "volume_level": "input_number.volume",
                        "is_volume_muted": "input_boolean.muted",
                    },
                    "commands": {
                        "volume_set": {
                            "action": "input_number.set_value",
                            "target": {"entity_id": "input_number.volume"},
                            "data": {"value": "{{ volume_level }}"},
                        },
                        "volume_mute": {
                            "action": "input_boolean.turn_on",
                            "target": {"entity_id": "input_boolean.muted"},
                        },
                    },
                }
            ]
        },
    )
    await hass.async_block_till_done()
    await hass.services.async_call(
        "input_number",
        "set_value",
        {"entity_id": "input_number.volume", "value": 0.5},
        blocking=True,
    )
    owner = MockConfigEntry(domain="esphome", title="Kitchen satellite")
    owner.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=owner.entry_id,
        identifiers={("esphome", "kitchen-satellite")},
        name="Kitchen satellite",
    )
    er.async_get(hass).async_update_entity(PLAYER, device_id=device.id)
    await hass.async_block_till_done()
    assert hass.states.get(PLAYER).state == "playing"
    return device.id


async def _dispatch(
    hass: HomeAssistant,
    entry: ConfigEntry,
    name: str,
    arguments: dict[str, Any] | str,
    ctx: CallContext,
) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    output = await entry.runtime_data.functions.async_dispatch(
        FunctionCall(f"call_{name}", name, args), ctx
    )
    await hass.async_block_till_done()
    result: dict[str, Any] = json.loads(output)
    return result


def _volume(hass: HomeAssistant) -> float:
    return float(hass.states.get("input_number.volume").state)


async def test_volume_functions_act_on_the_satellites_player(
    hass: HomeAssistant, config_entry: ConfigEntry, satellite: str
) -> None:
    """set/adjust volume and quiet move the satellite's own media player."""
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    ctx = CallContext(conversation_id="conv", device_id=satellite)

    out = await _dispatch(
        hass, config_entry, "set_device_volume", {"volume_level": 30}, ctx
    )
    assert out == {"result": "Volume set to 30%.", "volume_level": 30}
    assert _volume(hass) == pytest.approx(0.3)

    out = await _dispatch(
        hass, config_entry, "adjust_device_volume", {"action": "increase"}, ctx
    )
    assert out["volume_level"] == 40
    assert _volume(hass) == pytest.approx(0.4)
    out = await _dispatch(
        hass, config_entry, "adjust_device_volume", {"action": "decrease"}, ctx
    )
    assert _volume(hass) == pytest.approx(0.3)

    out = await _dispatch(hass, config_entry, "quiet_device", {}, ctx)
    assert out == {"result": "The device is muted."}
    assert hass.states.get("input_boolean.muted").state == "on"
    # Device functions are the service's own: automations never see them.
    assert events == []


async def test_bad_volume_arguments_change_nothing(
    hass: HomeAssistant, config_entry: ConfigEntry, satellite: str
) -> None:
    """Out-of-range levels, unknown actions and broken JSON are explained."""
    ctx = CallContext(conversation_id="conv", device_id=satellite)
    out = await _dispatch(
        hass, config_entry, "set_device_volume", {"volume_level": 150}, ctx
    )
    assert "0 to 100" in out["error"]
    out = await _dispatch(
        hass, config_entry, "adjust_device_volume", {"action": "louder"}, ctx
    )
    assert "increase" in out["error"]
    out = await _dispatch(hass, config_entry, "set_device_volume", "{oops", ctx)
    assert "not valid JSON" in out["error"]
    assert _volume(hass) == pytest.approx(0.5)


async def test_reply_player_and_stop_hook(
    hass: HomeAssistant, config_entry: ConfigEntry, satellite: str
) -> None:
    """A reply played on another media player takes the volume.

    stop_audio runs the voice path's hook.
    """
    stopped: list[bool] = []

    async def stop_reply() -> None:
        stopped.append(True)

    ctx = CallContext(
        conversation_id="conv",
        satellite_entity_id="assist_satellite.elsewhere",
        media_player_entity_id=PLAYER,
        stop_reply=stop_reply,
    )
    out = await _dispatch(
        hass, config_entry, "set_device_volume", {"volume_level": 70}, ctx
    )
    assert _volume(hass) == pytest.approx(0.7)
    out = await _dispatch(hass, config_entry, "stop_audio", {}, ctx)
    assert out == {"result": "Stopped the assistant's reply."}
    assert stopped == [True]


async def test_satellite_without_a_player_says_so(
    hass: HomeAssistant, config_entry: ConfigEntry
) -> None:
    """A satellite device with no media player: the output says what can't be done."""
    owner = MockConfigEntry(domain="wyoming", title="Bare satellite")
    owner.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=owner.entry_id,
        identifiers={("wyoming", "bare")},
        name="Bare satellite",
    )
    ctx = CallContext(conversation_id="conv", device_id=device.id)
    out = await _dispatch(
        hass, config_entry, "set_device_volume", {"volume_level": 10}, ctx
    )
    assert "no media player" in out["error"]
    out = await _dispatch(hass, config_entry, "quiet_device", {}, ctx)
    assert "no media player" in out["error"]
    out = await _dispatch(hass, config_entry, "stop_audio", {}, ctx)
    assert "Nothing is playing" in out["result"]


async def test_spoken_call_carries_the_satellites_device(
    hass: HomeAssistant, config_entry: ConfigEntry, satellite: str
) -> None:
    """A call from a satellite names its device in the event.

    An automation can use it to answer about that device.
    """
    satellite_entity = er.async_get(hass).async_get_or_create(
        "assist_satellite", "esphome", "kitchen-satellite", device_id=satellite
    )
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": {
                    "trigger": "event",
                    "event_type": EVENT_FUNCTION_CALL,
                    "event_data": {"name": "where_am_i"},
                },
                "actions": {
                    "action": "itannix.function_call_response",
                    "data": {
                        "call_id": "{{ trigger.event.data.call_id }}",
                        "response": {
                            "room": "{{ device_attr(trigger.event.data.device_id,"
                            " 'name') }}"
                        },
                    },
                },
            }
        },
    )
    events = async_capture_events(hass, EVENT_FUNCTION_CALL)
    ctx = CallContext(
        conversation_id="conv", satellite_entity_id=satellite_entity.entity_id
    )
    out = await _dispatch(hass, config_entry, "where_am_i", {}, ctx)
    assert out == {"room": "Kitchen satellite"}
    assert events[0].data["device_id"] == satellite
