"""Base entity: one service device per config entry."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from .const import DOMAIN
from .runtime import ItanniXConfigEntry


class ItanniXEntity(Entity):
    """Common naming and device of every ItanniX entity."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, entry: ItanniXConfigEntry, key: str) -> None:
        """Attach the entity to the entry's device."""
        self.entry = entry
        self._attr_unique_id = f"{entry.entry_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            manufacturer="ItanniX",
            model="Realtime assistant",
            entry_type=DeviceEntryType.SERVICE,
        )
