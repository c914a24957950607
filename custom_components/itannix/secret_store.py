"""The TOFU client secret, kept in Home Assistant storage rather than the config entry.

Config entries end up in backups, diagnostics and support dumps; a private ``Store`` file
(mode 0600) holds only secrets, one per Client ID (the entry's unique ID).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TypedDict

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN, SECRET_BYTES

STORAGE_VERSION = 1
STORAGE_KEY = f"{DOMAIN}.secrets"
DATA_SECRET_STORE: HassKey[SecretStore] = HassKey(f"{DOMAIN}_secret_store")


class _StoreData(TypedDict):
    secrets: dict[str, str]


def generate_secret() -> str:
    """Return a fresh client secret (URL-safe, 43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


class SecretStore:
    """Client secrets by Client ID, loaded once and written atomically."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Initialize the store (nothing is read until first use)."""
        self._store: Store[_StoreData] = Store(
            hass, STORAGE_VERSION, STORAGE_KEY, private=True, atomic_writes=True
        )
        self._secrets: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> dict[str, str]:
        if self._secrets is None:
            data = await self._store.async_load()
            self._secrets = dict(data["secrets"]) if data else {}
        return self._secrets

    async def async_get(self, client_id: str) -> str | None:
        """Return the secret enrolled for this client, if any."""
        async with self._lock:
            return (await self._load()).get(client_id)

    async def async_set(self, client_id: str, secret: str) -> None:
        """Store (or replace) the secret of a client, on disk before returning."""
        async with self._lock:
            stored = await self._load()
            stored[client_id] = secret
            await self._store.async_save({"secrets": dict(stored)})

    async def async_remove(self, client_id: str) -> None:
        """Forget the secret of a client."""
        async with self._lock:
            stored = await self._load()
            if stored.pop(client_id, None) is not None:
                await self._store.async_save({"secrets": dict(stored)})


def get_secret_store(hass: HomeAssistant) -> SecretStore:
    """Return the one secret store of this Home Assistant instance."""
    if (store := hass.data.get(DATA_SECRET_STORE)) is None:
        store = hass.data[DATA_SECRET_STORE] = SecretStore(hass)
    return store
