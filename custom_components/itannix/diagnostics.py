"""Diagnostics: configuration and live session counts, with every credential redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_CLIENT_ID, CONF_WORKSPACE_KEY
from .runtime import ItanniXConfigEntry

TO_REDACT = {CONF_WORKSPACE_KEY, "client_secret", "secret"}


def _shorten(client_id: str) -> str:
    """Enough of the Client ID to tell clients apart, not enough to reuse it."""
    return f"{client_id[:4]}…{client_id[-4:]}" if len(client_id) > 8 else "**REDACTED**"


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: ItanniXConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for a config entry."""
    data = async_redact_data(dict(entry.data), TO_REDACT)
    data[CONF_CLIENT_ID] = _shorten(entry.data[CONF_CLIENT_ID])
    return {
        "data": data,
        "options": async_redact_data(dict(entry.options), TO_REDACT),
        "sessions": entry.runtime_data.sessions.diagnostics(),
    }
