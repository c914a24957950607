"""The ItanniX Realtime integration: a speech-to-speech assistant for Home Assistant."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from . import migration
from .audio_relay import async_setup_relay
from .const import (
    APP_SOURCE,
    CONF_ASSISTANT_ID,
    CONF_BASE_URL,
    CONF_CLIENT_ID,
    CONF_WORKSPACE_KEY,
    DOMAIN,
)
from .failures import connect_failure
from .functions import FunctionDispatcher
from .pipeline import async_ensure_pipeline
from .realtime import (
    AuthenticationError,
    CannotConnectError,
    Credentials,
    InvalidUrlError,
    InvalidValueError,
    ItanniXClient,
    ItanniXError,
    RedirectError,
)
from .runtime import ItanniXConfigEntry, ItanniXRuntime
from .secret_store import get_secret_store
from .services import async_setup_services
from .sessions import SessionManager

PLATFORMS: list[Platform] = [
    Platform.CONVERSATION,
    Platform.EVENT,
    Platform.STT,
    Platform.TTS,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions and the audio view, whether or not an entry is loaded."""
    async_setup_services(hass)
    async_setup_relay(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ItanniXConfigEntry) -> bool:
    """Check the client still authenticates, then set up its entities."""
    secret = await get_secret_store(hass).async_get(entry.data[CONF_CLIENT_ID])
    if secret is None:
        # Storage restored without the secret: only a fresh enrollment can fix it.
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="secret_missing"
        )
    try:
        client = ItanniXClient(
            async_get_clientsession(hass),
            entry.data[CONF_BASE_URL],
            Credentials(
                client_id=entry.data[CONF_CLIENT_ID],
                client_secret=secret,
                workspace_key=entry.data.get(CONF_WORKSPACE_KEY),
            ),
            assistant_id=entry.options.get(CONF_ASSISTANT_ID) or None,
            app_source=APP_SOURCE,
        )
        # The cheapest call that exercises the same credentials as every realtime turn.
        await client.create_session()
    except AuthenticationError as err:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN,
            translation_key="auth_failed",
            translation_placeholders={"hint": err.hint or err.message},
        ) from err
    except RedirectError as err:
        # Not followed (credentials stay home), and retrying cannot help.
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="redirected",
            translation_placeholders={"location": err.location or "-"},
        ) from err
    except InvalidValueError as err:
        # A stored ID or key no HTTP header can carry: only the user can change it.
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_characters",
            translation_placeholders={"error": err.message},
        ) from err
    except InvalidUrlError as err:
        # Retrying cannot help: the stored URL itself is refused (reconfigure it).
        raise ConfigEntryError(
            translation_domain=DOMAIN, translation_key="invalid_url"
        ) from err
    except CannotConnectError as err:
        key, placeholders = connect_failure(err)
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders=placeholders,
        ) from err
    except ItanniXError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err

    entry.runtime_data = ItanniXRuntime(
        client=client,
        sessions=SessionManager(hass, entry, client),
        functions=FunctionDispatcher(hass, entry),
    )
    # After async_unload_entry has closed the sessions: drop whatever still waits.
    entry.async_on_unload(entry.runtime_data.functions.async_shutdown)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await async_ensure_pipeline(hass, entry)
    return True


async def async_migrate_entry(hass: HomeAssistant, entry: ItanniXConfigEntry) -> bool:
    """Bring an entry made by an earlier version up to date."""
    return await migration.async_migrate_entry(hass, entry)


async def async_unload_entry(hass: HomeAssistant, entry: ItanniXConfigEntry) -> bool:
    """Unload the entities and close every open realtime session."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.sessions.async_close_all()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: ItanniXConfigEntry) -> None:
    """Forget the client's secret together with the entry."""
    await get_secret_store(hass).async_remove(entry.data[CONF_CLIENT_ID])
