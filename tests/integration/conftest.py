"""Fixtures for the Home Assistant side: entries made through the real config flow."""

from __future__ import annotations

from pathlib import Path

from homeassistant.config_entries import SOURCE_USER, ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.setup import async_setup_component
import pytest

from custom_components.itannix.const import (
    CONF_BASE_URL,
    CONF_CLIENT_ID,
    CONF_WORKSPACE_KEY,
    DOMAIN,
)
from tests.conftest import WORKSPACE_KEY
from tests.emulator import Emulator

CLIENT_ID = "5f0c7f7e-6a38-4c52-9b6e-2f1a2d3c4b5a"


@pytest.fixture(autouse=True)
async def auto_enable_custom_integrations(
    hass: HomeAssistant, enable_custom_integrations: None, tmp_path: Path
) -> None:
    """Load the integration from custom_components/ in every test.

    As in a real Home Assistant, the core integration the agent builds on is loaded.
    Each test gets its own configuration directory: the harness's default is shared
    by every run, so text-to-speech files cached there by an earlier run would answer
    instead of the integration.
    """
    hass.config.config_dir = str(tmp_path)
    assert await async_setup_component(hass, "homeassistant", {})


def user_input(emulator: Emulator, **overrides: str) -> dict[str, str]:
    """What a user types in the setup form to reach the emulator."""
    return {
        CONF_WORKSPACE_KEY: WORKSPACE_KEY,
        CONF_CLIENT_ID: CLIENT_ID,
        CONF_BASE_URL: emulator.url,
        **overrides,
    }


async def async_add_entry(hass: HomeAssistant, emulator: Emulator) -> ConfigEntry:
    """Add an entry the way a user does: through the config flow, enrolling for real."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    entry = result["result"]
    assert isinstance(entry, ConfigEntry)
    return entry


@pytest.fixture
async def config_entry(hass: HomeAssistant, emulator: Emulator) -> ConfigEntry:
    """A loaded entry, enrolled with the emulator through the config flow."""
    return await async_add_entry(hass, emulator)
