"""The "Function call" event entity: every call handed to automations, in the UI.

Its event types are the function names seen so far (they are known only once called)
plus a generic one; they survive restarts through the entity's restored state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.components.event import ATTR_EVENT_TYPES, EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import ItanniXEntity
from .runtime import ItanniXConfigEntry

PARALLEL_UPDATES = 0

# Also the type of calls past the name limit, so the attribute stays small.
GENERIC_EVENT_TYPE: Final = "function_call"
MAX_EVENT_TYPES: Final = 100


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
        """Initialize with only the generic event type."""
        super().__init__(entry, "function_call")
        self._attr_event_types = [GENERIC_EVENT_TYPE]

    async def async_added_to_hass(self) -> None:
        """Restore the names seen before, then listen for calls."""
        await super().async_added_to_hass()
        if (last := await self.async_get_last_state()) is not None:
            restored = last.attributes.get(ATTR_EVENT_TYPES)
            if isinstance(restored, list):
                names = [name for name in restored if isinstance(name, str)]
                self._attr_event_types = list(
                    dict.fromkeys([GENERIC_EVENT_TYPE, *names])
                )[:MAX_EVENT_TYPES]
        self.async_on_remove(
            self.entry.runtime_data.functions.async_add_listener(self._on_call)
        )

    @callback
    def _on_call(self, data: Mapping[str, Any]) -> None:
        name = str(data["name"])
        if name not in self.event_types and len(self.event_types) < MAX_EVENT_TYPES:
            # A new list: event_types is a cached property reset on assignment.
            self._attr_event_types = [*self.event_types, name]
        event_type = name if name in self.event_types else GENERIC_EVENT_TYPE
        self._trigger_event(event_type, dict(data))
        self.async_write_ha_state()
