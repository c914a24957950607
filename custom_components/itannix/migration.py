"""Config entry migrations.

Version 1.1 keyed the entities' unique IDs and the service device on the config entry's
ID; 1.2 keys them on the Client ID, which stays the same when the entry is removed and
added again (and is what the user sees in the ItanniX dashboard).
"""

from __future__ import annotations

import logging

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, entity_registry as er

from .const import CONF_CLIENT_ID, DOMAIN, ENTRY_MINOR_VERSION
from .runtime import ItanniXConfigEntry

_LOGGER = logging.getLogger(__name__)


async def async_migrate_entry(hass: HomeAssistant, entry: ItanniXConfigEntry) -> bool:
    """Move an entry to the current version; refuse one from a newer release."""
    if entry.version > 1:
        # Made by a newer release of this integration: its data is not ours to guess.
        return False
    if entry.minor_version < 2:
        _key_on_client_id(hass, entry)
    hass.config_entries.async_update_entry(entry, minor_version=ENTRY_MINOR_VERSION)
    return True


@callback
def _key_on_client_id(hass: HomeAssistant, entry: ItanniXConfigEntry) -> None:
    """Rewrite ``<entry id>_<key>`` unique IDs and the device identifier."""
    client_id: str = entry.data[CONF_CLIENT_ID]
    old_prefix = f"{entry.entry_id}_"
    registry = er.async_get(hass)
    for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
        if entity.platform != DOMAIN or not entity.unique_id.startswith(old_prefix):
            continue
        new_unique_id = client_id + "_" + entity.unique_id.removeprefix(old_prefix)
        if registry.async_get_entity_id(entity.domain, DOMAIN, new_unique_id):
            # Cannot happen unless the registry was edited by hand: keep both.
            _LOGGER.warning(
                "Not migrating %s: an entity with its new unique ID exists",
                entity.entity_id,
            )
            continue
        registry.async_update_entity(entity.entity_id, new_unique_id=new_unique_id)
    devices = dr.async_get(hass)
    device = devices.async_get_device(identifiers={(DOMAIN, entry.entry_id)})
    if device is not None and not devices.async_get_device(
        identifiers={(DOMAIN, client_id)}
    ):
        devices.async_update_device(device.id, new_identifiers={(DOMAIN, client_id)})
