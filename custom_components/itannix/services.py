"""The integration's actions: answering function calls, starting conversations."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
import voluptuous as vol

from .const import (
    DOMAIN,
    LOGGER,
    SERVICE_FUNCTION_CALL_RESPONSE,
    SERVICE_START_CONVERSATION,
)
from .opening import ATTR_CONFIG_ENTRY_ID, ATTR_MESSAGE, async_start_conversation
from .runtime import ItanniXConfigEntry

ATTR_CALL_ID: Final = "call_id"
ATTR_RESPONSE: Final = "response"

# Typed as Any: 2025.12 builds schemas with voluptuous, 2026.x with probatio.
RESPONSE_SCHEMA: Any = vol.Schema(
    {
        vol.Required(ATTR_CALL_ID): cv.string,
        vol.Required(ATTR_RESPONSE): dict,
    }
)


async def _async_respond(call: ServiceCall) -> None:
    """Hand the response to the entry whose call waits for it."""
    call_id: str = call.data[ATTR_CALL_ID]
    entries: list[ItanniXConfigEntry] = call.hass.config_entries.async_loaded_entries(
        DOMAIN
    )
    for entry in entries:
        if entry.runtime_data.functions.async_respond(
            call_id, call.data[ATTR_RESPONSE]
        ):
            return
    LOGGER.debug("No function call %s waits for a response; dropped", call_id)
    # Raised so that the automation's trace shows the answer went nowhere.
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="unknown_call_id",
        translation_placeholders={"call_id": call_id},
    )


START_CONVERSATION_SCHEMA: Any = vol.Schema(
    {
        vol.Required(ATTR_ENTITY_ID): cv.entity_ids,
        vol.Optional(ATTR_MESSAGE): cv.string,
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
    }
)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions (once, whatever the entries)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_START_CONVERSATION,
        async_start_conversation,
        schema=START_CONVERSATION_SCHEMA,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_FUNCTION_CALL_RESPONSE,
        _async_respond,
        schema=RESPONSE_SCHEMA,
    )
