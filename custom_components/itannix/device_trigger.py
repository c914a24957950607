"""Device trigger "Assistant called a function" on the ItanniX service device."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.device_automation.exceptions import (
    InvalidDeviceAutomationConfig,
)
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType
import voluptuous as vol

from .const import DOMAIN, EVENT_FUNCTION_CALL

TRIGGER_FUNCTION_CALLED: Final = "function_called"
CONF_FUNCTION: Final = "function"

# Typed as Any: 2025.12 builds schemas with voluptuous, 2026.x with probatio.
_BASE: Any = DEVICE_TRIGGER_BASE_SCHEMA
TRIGGER_SCHEMA = _BASE.extend(
    {
        vol.Required(CONF_TYPE): vol.In([TRIGGER_FUNCTION_CALLED]),
        vol.Optional(CONF_FUNCTION): cv.string,
    }
)


def _entry_id(hass: HomeAssistant, device_id: str) -> str | None:
    """The config entry behind an ItanniX service device."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None or not any(domain == DOMAIN for domain, _ in device.identifiers):
        return None
    return next(
        (
            entry.entry_id
            for entry in hass.config_entries.async_entries(DOMAIN)
            if entry.entry_id in device.config_entries
        ),
        None,
    )


async def async_get_triggers(
    hass: HomeAssistant, device_id: str
) -> list[dict[str, str]]:
    """Offer the function call trigger on the ItanniX device."""
    if _entry_id(hass, device_id) is None:
        return []
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: TRIGGER_FUNCTION_CALLED,
        }
    ]


async def async_get_trigger_capabilities(
    hass: HomeAssistant, config: ConfigType
) -> dict[str, Any]:
    """Let the user pick one function by name (any function when left empty)."""
    return {"extra_fields": vol.Schema({vol.Optional(CONF_FUNCTION): cv.string})}


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Listen for the entry's function call events (of one name, if given)."""
    entry_id = _entry_id(hass, config[CONF_DEVICE_ID])
    if entry_id is None:
        raise InvalidDeviceAutomationConfig(
            translation_domain=DOMAIN,
            translation_key="unknown_device",
            translation_placeholders={"device_id": config[CONF_DEVICE_ID]},
        )
    event_data: dict[str, str] = {"entry_id": entry_id}
    if function := config.get(CONF_FUNCTION):
        event_data["name"] = function
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: "event",
            event_trigger.CONF_EVENT_TYPE: EVENT_FUNCTION_CALL,
            CONF_EVENT_DATA: event_data,
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
