"""Base entity: one service device per config entry."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from .const import CONF_CLIENT_ID, DEFAULT_TITLE, DOMAIN, entry_title
from .runtime import ItanniXConfigEntry


def _unique_id(entry: ItanniXConfigEntry, key: str) -> str:
    # The Client ID, not the entry ID: it stays when the entry is removed and re-added.
    return f"{entry.data[CONF_CLIENT_ID]}_{key}"


def async_entity_id(
    hass: HomeAssistant, entry: ItanniXConfigEntry, platform: Platform, key: str
) -> str | None:
    """The entity ID of one of the entry's entities (``key`` as in its constructor)."""
    return er.async_get(hass).async_get_entity_id(
        platform, DOMAIN, _unique_id(entry, key)
    )


class ItanniXEntity(Entity):
    """Common naming and device of every ItanniX entity."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, entry: ItanniXConfigEntry, key: str) -> None:
        """Attach the entity to the entry's device."""
        self.entry = entry
        self._attr_unique_id = _unique_id(entry, key)
        # The title set up gives names the client; the device keeps the plain name
        # (so entity IDs stay conversation.itannix_assistant...) unless renamed.
        title = entry.title
        if title == entry_title(entry.data[CONF_CLIENT_ID]):
            title = DEFAULT_TITLE
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.data[CONF_CLIENT_ID])},
            name=title,
            manufacturer="ItanniX",
            model="Realtime assistant",
            entry_type=DeviceEntryType.SERVICE,
        )
