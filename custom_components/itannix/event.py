"""The "Function call" event entity: every call handed to automations, in the UI.

Every call fires the one event type, ``function_call``, with the function's name, its
arguments and its ids in the event's data: an automation built in the UI on this entity
("Event received: Function call") runs for every call, and one for a single function
filters on the name (or uses the device trigger, which has a field for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.components.event import EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import ItanniXEntity
from .runtime import ItanniXConfigEntry

PARALLEL_UPDATES = 0

EVENT_TYPE: Final = "function_call"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the function call event entity."""
    async_add_entities([ItanniXFunctionCallEvent(entry)])


class ItanniXFunctionCallEvent(EventEntity, ItanniXEntity):
    """Fires with the name, arguments and ids of each function call."""

    _attr_translation_key = "function_call"

    def __init__(self, entry: ItanniXConfigEntry) -> None:
        """Initialize with the one event type."""
        super().__init__(entry, "function_call")
        self._attr_event_types = [EVENT_TYPE]

    async def async_added_to_hass(self) -> None:
        """Listen for calls."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.entry.runtime_data.functions.async_add_listener(self._on_call)
        )

    @callback
    def _on_call(self, data: Mapping[str, Any]) -> None:
        self._trigger_event(EVENT_TYPE, dict(data))
        self.async_write_ha_state()
