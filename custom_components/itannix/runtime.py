"""The typed runtime object every platform reaches through ``entry.runtime_data``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

from .realtime import AuthenticationError, ItanniXClient

if TYPE_CHECKING:
    from .functions import FunctionDispatcher
    from .sessions import SessionManager


@dataclass(slots=True)
class ItanniXRuntime:
    """What one config entry holds while it is loaded."""

    client: ItanniXClient
    sessions: SessionManager
    functions: FunctionDispatcher


type ItanniXConfigEntry = ConfigEntry[ItanniXRuntime]


def async_note_failure(
    hass: HomeAssistant, entry: ItanniXConfigEntry, err: BaseException
) -> None:
    """A turn failed: credentials the service refused start reauthentication."""
    if isinstance(err, AuthenticationError):
        entry.async_start_reauth(hass)
