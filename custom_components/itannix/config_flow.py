"""Config flow for ItanniX Realtime: TOFU enrollment, reauth, reconfigure and options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
import uuid

from homeassistant.components.media_player.const import DOMAIN as MEDIA_PLAYER_DOMAIN
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import llm
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    Selector,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TemplateSelector,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol

from .const import (
    APP_SOURCE,
    CONF_ASSISTANT_ID,
    CONF_BASE_URL,
    CONF_CLIENT_ID,
    CONF_FUNCTION_TIMEOUT,
    CONF_IDLE_TIMEOUT,
    CONF_MAX_SESSIONS,
    CONF_MEDIA_PLAYER,
    CONF_VOICE,
    CONF_WORKSPACE_KEY,
    CONNECT_TIMEOUT,
    DEFAULT_BASE_URL,
    DEFAULT_FUNCTION_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SESSIONS,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    LOGGER,
    MAX_FUNCTION_TIMEOUT,
    MAX_IDLE_TIMEOUT,
    MAX_MAX_SESSIONS,
    MIN_FUNCTION_TIMEOUT,
    MIN_IDLE_TIMEOUT,
    MIN_MAX_SESSIONS,
    entry_title,
)
from .failures import FlowStep, flow_error
from .prompt import api_ids, requires_admin
from .realtime import (
    Credentials,
    InvalidUrlError,
    InvalidValueError,
    ItanniXClient,
    ItanniXError,
    RealtimeConnection,
    validate_base_url,
    validate_header_value,
)
from .runtime import ItanniXConfigEntry
from .secret_store import generate_secret, get_secret_store

_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_URL = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


async def async_enroll(
    hass: HomeAssistant,
    data: Mapping[str, Any],
    secret: str,
    assistant_id: str | None = None,
) -> None:
    """Open and close one real session: enrolls the secret (TOFU) or proves it matches."""
    client = ItanniXClient(
        async_get_clientsession(hass),
        data[CONF_BASE_URL],
        Credentials(
            client_id=data[CONF_CLIENT_ID],
            client_secret=secret,
            workspace_key=data.get(CONF_WORKSPACE_KEY),
        ),
        assistant_id=assistant_id,
        app_source=APP_SOURCE,
    )
    connection = RealtimeConnection(client, connect_timeout=CONNECT_TIMEOUT)
    try:
        await connection.connect()
    finally:
        await connection.close()


# Every placeholder any error of the flow's forms uses: each form passes them all.
_NO_DETAILS: Mapping[str, str] = {
    "hint": "",
    "host": "",
    "location": "",
    "error": "",
    "wait": "",
}


async def _async_try(
    hass: HomeAssistant,
    data: Mapping[str, Any],
    secret: str,
    assistant_id: str | None,
    step: FlowStep,
    errors: dict[str, str],
    placeholders: dict[str, str],
) -> bool:
    """Enroll or verify; fill ``errors``/``placeholders`` and return False on failure."""
    try:
        await async_enroll(hass, data, secret, assistant_id)
    except ItanniXError as err:
        error = flow_error(err, step)
        errors[error.on] = error.key
        placeholders.update(error.placeholders)
        if error.key == "unknown":
            LOGGER.warning("Unexpected answer from ItanniX: %s", err)
        return False
    except Exception:  # noqa: BLE001 - a bug below must still end in a form error
        LOGGER.exception("Unexpected error while contacting ItanniX")
        errors["base"] = "unknown"
        return False
    return True


def _form_schema(fields: dict[Any, Any]) -> Any:
    """Return a form schema that both supported Home Assistant versions take.

    2025.12 types forms as voluptuous schemas; 2026.x types them as probatio schemas
    and still accepts voluptuous ones. Only the static type differs between them.
    """
    return vol.Schema(fields)


async def _async_voice_selector(
    entry: ItanniXConfigEntry, current: str | None
) -> Selector[Any]:
    """A pick list of the workspace's voices; free text when they cannot be listed."""
    if entry.state is not ConfigEntryState.LOADED:
        # Not set up (service down, reauth pending): there is no client to ask.
        return TextSelector()
    try:
        voices = await entry.runtime_data.client.list_voices()
    except ItanniXError as err:
        LOGGER.debug("Could not list the ItanniX voices: %s", err)
        return TextSelector()
    options = [
        SelectOptionDict(value=voice.voice_id, label=voice.name) for voice in voices
    ]
    if current and all(option["value"] != current for option in options):
        # A voice gone from the workspace stays selectable instead of failing the form.
        options.append(SelectOptionDict(value=current, label=current))
    if not options:
        return TextSelector()
    return SelectSelector(
        SelectSelectorConfig(options=options, mode=SelectSelectorMode.DROPDOWN)
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ItanniXConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one ItanniX client (a Client ID with its own enrolled secret)."""

    VERSION = 1
    MINOR_VERSION = ENTRY_MINOR_VERSION

    def __init__(self) -> None:
        """Initialize the flow."""
        self._client_id = str(uuid.uuid4())
        self._accepted_non_uuid: str | None = None

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the Workspace Key, the Client ID and the server; enroll before saving."""
        errors: dict[str, str] = {}
        placeholders = dict(_NO_DETAILS)
        if user_input is not None:
            data = {
                CONF_BASE_URL: user_input[CONF_BASE_URL].strip().rstrip("/"),
                CONF_CLIENT_ID: user_input[CONF_CLIENT_ID].strip(),
                CONF_WORKSPACE_KEY: user_input[CONF_WORKSPACE_KEY].strip(),
            }
            client_id = data[CONF_CLIENT_ID]
            if client_id:
                await self.async_set_unique_id(client_id)
                self._abort_if_unique_id_configured()
            if not client_id:
                errors[CONF_CLIENT_ID] = "client_id_empty"
            elif not _is_uuid(client_id) and self._accepted_non_uuid != client_id:
                # Warn once; the same value submitted again is used as it is.
                self._accepted_non_uuid = client_id
                errors[CONF_CLIENT_ID] = "client_id_not_uuid"
            else:
                try:
                    validate_base_url(data[CONF_BASE_URL])
                except InvalidUrlError:
                    errors[CONF_BASE_URL] = "invalid_url"
            if not errors:
                secret = generate_secret()
                if await _async_try(
                    self.hass, data, secret, None, "user", errors, placeholders
                ):
                    # Stored only once enrolled: a secret that never worked is worthless.
                    await get_secret_store(self.hass).async_set(client_id, secret)
                    # Like core's LLM integrations, a new entry controls Home
                    # Assistant through Assist ("Device control") out of the box.
                    return self.async_create_entry(
                        title=entry_title(client_id),
                        data=data,
                        options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]},
                    )
            self._client_id = client_id
            defaults: Mapping[str, Any] = user_input
        else:
            defaults = {
                CONF_BASE_URL: DEFAULT_BASE_URL,
                CONF_CLIENT_ID: self._client_id,
            }

        schema = _form_schema(
            {
                vol.Required(
                    CONF_WORKSPACE_KEY,
                    default=defaults.get(CONF_WORKSPACE_KEY, vol.UNDEFINED),
                ): _PASSWORD,
                vol.Required(CONF_CLIENT_ID, default=defaults[CONF_CLIENT_ID]): str,
                vol.Required(CONF_BASE_URL, default=defaults[CONF_BASE_URL]): _URL,
            }
        )
        return self.async_show_form(
            step_id="user",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """The enrolled secret no longer matches (or was lost)."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the current Workspace Key; enroll a fresh secret if it was reset."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        placeholders = {**_NO_DETAILS, "client_id": entry.data[CONF_CLIENT_ID]}
        if user_input is not None:
            data = {
                **entry.data,
                CONF_WORKSPACE_KEY: user_input[CONF_WORKSPACE_KEY].strip(),
            }
            if await self._async_reauthenticate(entry, data, errors, placeholders):
                return self.async_update_reload_and_abort(entry, data=data)
        schema = _form_schema(
            {
                vol.Required(
                    CONF_WORKSPACE_KEY, default=entry.data.get(CONF_WORKSPACE_KEY, "")
                ): _PASSWORD,
            }
        )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_reauthenticate(
        self,
        entry: ItanniXConfigEntry,
        data: Mapping[str, Any],
        errors: dict[str, str],
        placeholders: dict[str, str],
    ) -> bool:
        """Enroll a fresh secret, or, when the old one still holds, keep it."""
        store = get_secret_store(self.hass)
        assistant_id = entry.options.get(CONF_ASSISTANT_ID)
        # A fresh secret first: after a reset in the dashboard, the earlier one is
        # never enrolled again (it may be why the user reset it).
        secret = generate_secret()
        if await _async_try(
            self.hass, data, secret, assistant_id, "reauth", errors, placeholders
        ):
            # Replace the stored secret only after the new one is enrolled.
            await store.async_set(entry.unique_id or "", secret)
            return True
        if errors.get("base") != "secret_not_reset":
            return False
        # Not reset: maybe only the Workspace Key had changed, and the stored secret
        # is still the enrolled one.
        stored = await store.async_get(entry.unique_id or "")
        return stored is not None and await _async_try(
            self.hass, data, stored, assistant_id, "reauth", {}, {}
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the server or the Workspace Key; the enrolled secret must still match."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        placeholders = {**_NO_DETAILS, "client_id": entry.data[CONF_CLIENT_ID]}
        if user_input is not None:
            data = {
                **entry.data,
                CONF_BASE_URL: user_input[CONF_BASE_URL].strip().rstrip("/"),
                CONF_WORKSPACE_KEY: user_input[CONF_WORKSPACE_KEY].strip(),
            }
            try:
                validate_base_url(data[CONF_BASE_URL])
            except InvalidUrlError:
                errors[CONF_BASE_URL] = "invalid_url"
            secret = await get_secret_store(self.hass).async_get(entry.unique_id or "")
            if secret is None:
                errors["base"] = "secret_missing"
            if not errors and await _async_try(
                self.hass,
                data,
                secret or "",
                entry.options.get(CONF_ASSISTANT_ID),
                "reconfigure",
                errors,
                placeholders,
            ):
                return self.async_update_reload_and_abort(entry, data=data)
        schema = _form_schema(
            {
                vol.Required(
                    CONF_WORKSPACE_KEY, default=entry.data[CONF_WORKSPACE_KEY]
                ): _PASSWORD,
                vol.Required(CONF_BASE_URL, default=entry.data[CONF_BASE_URL]): _URL,
            }
        )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> ItanniXOptionsFlow:
        """Return the options flow."""
        return ItanniXOptionsFlow()


def _api_selector(hass: HomeAssistant) -> SelectSelector:
    """A multi-select of Home Assistant's LLM APIs; admin-only ones say so."""
    options = [
        SelectOptionDict(
            value=api.id,
            # The frontend shows a translated label instead where strings.json has
            # one (under the selector's translation key): Home Assistant's own.
            label=f"{api.name} (admins only)" if requires_admin(api) else api.name,
        )
        for api in llm.async_get_apis(hass)
    ]
    return SelectSelector(
        SelectSelectorConfig(
            options=options,
            multiple=True,
            mode=SelectSelectorMode.LIST,
            translation_key=CONF_LLM_HASS_API,
        )
    )


def _admin_only_names(hass: HomeAssistant, ids: list[str]) -> list[str]:
    """The names of the APIs in ``ids`` that only an admin user may use."""
    return [
        api.name
        for api in llm.async_get_apis(hass)
        if api.id in ids and requires_admin(api)
    ]


def _saved_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """The options to store: fields left empty are not; the assistant ID trimmed."""
    saved = {
        key: value.strip() if key == CONF_ASSISTANT_ID else value
        for key, value in user_input.items()
        if key != CONF_LLM_HASS_API
    }
    saved = {key: value for key, value in saved.items() if value not in ("", None)}
    # Always a list: an empty one is "no control".
    saved[CONF_LLM_HASS_API] = api_ids(user_input.get(CONF_LLM_HASS_API))
    return saved


class ItanniXOptionsFlow(OptionsFlowWithReload):
    """Assistant, Home Assistant control, voice and session lifetime."""

    def __init__(self) -> None:
        """Initialize the flow."""
        self._saved: dict[str, Any] = {}

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and save the options."""
        options = self.config_entry.options
        # Stored as one ID (or "none") before the APIs were a multi-select.
        chosen = api_ids(options.get(CONF_LLM_HASS_API))
        errors: dict[str, str] = {}
        if user_input is not None:
            saved = _saved_options(user_input)
            try:
                validate_header_value("assistant_id", saved.get(CONF_ASSISTANT_ID))
            except InvalidValueError:
                errors[CONF_ASSISTANT_ID] = "invalid_characters"
            else:
                self._saved = saved
                added = [api for api in saved[CONF_LLM_HASS_API] if api not in chosen]
                if _admin_only_names(self.hass, added):
                    return await self.async_step_admin_only()
                return self.async_create_entry(data=saved)

        known = {api.id for api in llm.async_get_apis(self.hass)}
        voice = await _async_voice_selector(self.config_entry, options.get(CONF_VOICE))
        schema = _form_schema(
            {
                vol.Optional(
                    CONF_ASSISTANT_ID,
                    description={"suggested_value": options.get(CONF_ASSISTANT_ID)},
                ): str,
                vol.Optional(
                    CONF_LLM_HASS_API,
                    description={
                        "suggested_value": [api for api in chosen if api in known]
                    },
                ): _api_selector(self.hass),
                vol.Optional(
                    CONF_PROMPT,
                    description={"suggested_value": options.get(CONF_PROMPT)},
                ): TemplateSelector(),
                vol.Optional(
                    CONF_VOICE,
                    description={"suggested_value": options.get(CONF_VOICE)},
                ): voice,
                vol.Optional(
                    CONF_MEDIA_PLAYER,
                    description={"suggested_value": options.get(CONF_MEDIA_PLAYER)},
                ): EntitySelector(EntitySelectorConfig(domain=MEDIA_PLAYER_DOMAIN)),
                vol.Optional(
                    CONF_IDLE_TIMEOUT,
                    default=options.get(CONF_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT),
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_IDLE_TIMEOUT,
                        max=MAX_IDLE_TIMEOUT,
                        step=10,
                        unit_of_measurement="s",
                        mode=NumberSelectorMode.BOX,
                    )
                ),
                vol.Optional(
                    CONF_MAX_SESSIONS,
                    default=options.get(CONF_MAX_SESSIONS, DEFAULT_MAX_SESSIONS),
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_MAX_SESSIONS,
                        max=MAX_MAX_SESSIONS,
                        step=1,
                        mode=NumberSelectorMode.BOX,
                    )
                ),
                vol.Optional(
                    CONF_FUNCTION_TIMEOUT,
                    # Suggested, not a default: left empty, the default applies.
                    description={
                        "suggested_value": options.get(
                            CONF_FUNCTION_TIMEOUT, DEFAULT_FUNCTION_TIMEOUT
                        )
                    },
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_FUNCTION_TIMEOUT,
                        max=MAX_FUNCTION_TIMEOUT,
                        step=1,
                        unit_of_measurement="s",
                        mode=NumberSelectorMode.BOX,
                    )
                ),
            }
        )
        if errors:
            # What was typed stays in the form, to be corrected.
            schema = self.add_suggested_values_to_schema(schema, user_input)
        return self.async_show_form(
            step_id="init", data_schema=schema, errors=errors or None
        )

    async def async_step_admin_only(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Say what an API that only admins may use leaves out; then save."""
        if user_input is not None:
            return self.async_create_entry(data=self._saved)
        names = _admin_only_names(self.hass, self._saved[CONF_LLM_HASS_API])
        return self.async_show_form(
            step_id="admin_only",
            data_schema=_form_schema({}),
            description_placeholders={"apis": ", ".join(names)},
        )
