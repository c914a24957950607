"""Setting up, unloading and removing an entry; diagnostics."""

from __future__ import annotations

import json
import logging

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.itannix.const import DOMAIN
from custom_components.itannix.secret_store import get_secret_store
from tests.emulator import Emulator

from .conftest import CLIENT_ID, async_add_entry


async def test_one_service_device_per_entry(
    hass: HomeAssistant, config_entry: ConfigEntry
) -> None:
    """The entry shows as one ItanniX service."""
    devices = dr.async_entries_for_config_entry(
        dr.async_get(hass), config_entry.entry_id
    )
    assert len(devices) == 1
    assert devices[0].entry_type is dr.DeviceEntryType.SERVICE
    assert devices[0].manufacturer == "ItanniX"


async def test_service_down_at_startup_retries(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """An unreachable service means 'retry later', not a broken entry."""
    emulator.faults.status["sessions"] = 503
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_RETRY

    emulator.faults.status.clear()
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.LOADED


async def test_missing_secret_asks_for_reauth(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Storage restored without the secret: setup fails and reauth takes over."""
    await get_secret_store(hass).async_remove(CLIENT_ID)
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]


async def test_removing_the_entry_forgets_the_secret(
    hass: HomeAssistant, config_entry: ConfigEntry
) -> None:
    """No secret outlives its entry."""
    assert await get_secret_store(hass).async_get(CLIENT_ID) is not None
    assert await hass.config_entries.async_remove(config_entry.entry_id)
    assert await get_secret_store(hass).async_get(CLIENT_ID) is None


async def test_diagnostics_hold_no_credentials(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    emulator: Emulator,
    config_entry: ConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Diagnostics show the setup and sessions, never the key, secret or full ID.

    What a user attaches to a bug report is locked down (the emulator's port aside).
    """
    assert await async_setup_component(hass, "diagnostics", {})
    await conversation.async_converse(
        hass, "Hello", None, Context(), agent_id="conversation.itannix_assistant"
    )
    diagnostics = await get_diagnostics_for_config_entry(
        hass, hass_client, config_entry
    )
    text = json.dumps(diagnostics)
    secret = await get_secret_store(hass).async_get(CLIENT_ID)
    assert secret is not None
    assert secret not in text
    assert "wk-test" not in text
    assert CLIENT_ID not in text
    assert diagnostics["data"]["workspace_key"] == "**REDACTED**"
    assert diagnostics["data"]["client_id"] == f"{CLIENT_ID[:4]}…{CLIENT_ID[-4:]}"
    assert diagnostics["data"].pop("base_url") == emulator.url
    assert diagnostics["sessions"]["open"] == 1
    assert diagnostics == snapshot


async def test_device_and_entities_snapshot(
    hass: HomeAssistant,
    config_entry: ConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The service device and its entities, as the device page shows them."""
    devices = dr.async_entries_for_config_entry(device_registry, config_entry.entry_id)
    assert len(devices) == 1
    device = devices[0]
    assert {
        "name": device.name,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "entry_type": device.entry_type,
        "sw_version": device.sw_version,
        "identifiers": sorted(device.identifiers),
    } == snapshot(name="device")
    entities = sorted(
        er.async_entries_for_config_entry(entity_registry, config_entry.entry_id),
        key=lambda entry: entry.entity_id,
    )
    assert [
        {
            "entity_id": entity.entity_id,
            "unique_id": entity.unique_id,
            "translation_key": entity.translation_key,
            "has_entity_name": entity.has_entity_name,
            "original_name": entity.original_name,
            "entity_category": entity.entity_category,
            "disabled_by": entity.disabled_by,
            "device": entity.device_id == device.id,
        }
        for entity in entities
    ] == snapshot(name="entities")


async def test_entry_from_version_1_1_keeps_its_entities_and_device(
    hass: HomeAssistant,
    config_entry: ConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Unique IDs keyed on the entry ID move to the Client ID; nothing is renamed."""
    entry_id = config_entry.entry_id
    assert await hass.config_entries.async_unload(entry_id)
    await hass.async_block_till_done()
    # Put the registries back as version 1.1 left them.
    entities = er.async_entries_for_config_entry(entity_registry, entry_id)
    assert entities
    renamed: dict[str, str] = {}
    for entity in entities:
        key = entity.unique_id.removeprefix(f"{CLIENT_ID}_")
        entity_registry.async_update_entity(
            entity.entity_id, new_unique_id=f"{entry_id}_{key}"
        )
        renamed[entity.entity_id] = key
    (device,) = dr.async_entries_for_config_entry(device_registry, entry_id)
    device_registry.async_update_device(device.id, new_identifiers={(DOMAIN, entry_id)})
    # A user renamed the device: the migration keeps it.
    device_registry.async_update_device(device.id, name_by_user="Hall assistant")
    hass.config_entries.async_update_entry(config_entry, minor_version=1)

    assert await hass.config_entries.async_setup(entry_id)
    await hass.async_block_till_done()

    assert config_entry.state is ConfigEntryState.LOADED
    assert config_entry.minor_version == 2
    after = {
        entity.entity_id: entity.unique_id
        for entity in er.async_entries_for_config_entry(entity_registry, entry_id)
    }
    # The same entities (no duplicates, the same entity IDs), keyed on the Client ID.
    assert after == {eid: f"{CLIENT_ID}_{key}" for eid, key in renamed.items()}
    devices = dr.async_entries_for_config_entry(device_registry, entry_id)
    assert [(d.id, d.identifiers, d.name_by_user) for d in devices] == [
        (device.id, {(DOMAIN, CLIENT_ID)}, "Hall assistant")
    ]


async def test_entry_from_a_newer_version_is_refused(
    hass: HomeAssistant, config_entry: ConfigEntry
) -> None:
    """A downgrade does not guess at data a newer release wrote."""
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    hass.config_entries.async_update_entry(config_entry, version=2)
    assert not await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.MIGRATION_ERROR


async def test_secret_never_logged(
    hass: HomeAssistant, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Even at debug level, set-up and a conversation log no credential."""
    caplog.set_level(logging.DEBUG)
    await async_add_entry(hass, emulator)
    await conversation.async_converse(
        hass, "Hello", None, Context(), agent_id="conversation.itannix_assistant"
    )
    secret = await get_secret_store(hass).async_get(CLIENT_ID)
    assert secret is not None
    # The harness's in-memory storage logs what it writes; Home Assistant's does not.
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith("pytest_homeassistant_custom_component")
    )
    assert "Opened a realtime session" in logged  # debug logs were captured
    assert secret not in logged
    assert "wk-test" not in logged
