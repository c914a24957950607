"""What Home Assistant adds to the assistant for one turn: its tools and its context.

One builder for typed and spoken turns, run every turn so what changes (the time, the
caller's extra instructions) is current. It follows core's LLM agents
(``ChatLog.async_provide_llm_data``: the options' prompt template, the LLM API's prompt,
the date and time, the caller's extra prompt) but touches no chat log: a spoken turn
builds it before the user speaks, when no conversation turn has started yet. The
assistant's own instructions (the ItanniX dashboard's) stay first; this is added to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, TemplateError
from homeassistant.helpers import llm, template
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN, LOGGER
from .runtime import ItanniXConfigEntry

# What the options stored for "No control" before they held a list of APIs.
LLM_API_NONE = "none"

# The LLM APIs already reported as left out, per entry: (entry ID, API ID).
_LEFT_OUT: HassKey[set[tuple[str, str]]] = HassKey(f"{DOMAIN}_llm_apis_left_out")


@dataclass(frozen=True, slots=True)
class TurnPrompt:
    """The LLM API a turn offers (if any) and the context it adds."""

    api: llm.APIInstance | None = None
    text: str = ""
    tool_names: frozenset[str] = field(default_factory=frozenset)


def api_ids(value: Any) -> list[str]:
    """The LLM API IDs an options value names, whichever way it was stored.

    A list since LLM APIs are a multi-select; before that one ID, or the "none" of
    "No control". An empty list (or nothing) is no API.
    """
    if not value:
        return []
    ids = [value] if isinstance(value, str) else [str(api) for api in value]
    return list(dict.fromkeys(api for api in ids if api and api != LLM_API_NONE))


def selected_apis(entry: ItanniXConfigEntry) -> list[str]:
    """The LLM APIs chosen in the options (none, one or several)."""
    return api_ids(entry.options.get(CONF_LLM_HASS_API))


def requires_admin(api: llm.API) -> bool:
    """Whether only an admin user may use ``api`` (Home Assistant 2026.11 and later)."""
    return bool(getattr(api, "requires_admin", False))


async def _is_admin(hass: HomeAssistant, llm_context: llm.LLMContext) -> bool:
    context = llm_context.context
    if context is None or not context.user_id:
        return False  # a voice satellite, an automation
    user = await hass.auth.async_get_user(context.user_id)
    return user is not None and user.is_admin


def _report_left_out(
    hass: HomeAssistant, entry: ItanniXConfigEntry, api_id: str, why: str
) -> None:
    """Warn once per entry and API that a chosen API is left out of turns."""
    reported = hass.data.setdefault(_LEFT_OUT, set())
    if (entry.entry_id, api_id) in reported:
        return
    reported.add((entry.entry_id, api_id))
    LOGGER.warning("The tools of the LLM API '%s' are left out: %s", api_id, why)


_NOT_REGISTERED = "no API of this ID is registered (is its integration loaded?)"
_NEEDS_ADMIN = (
    "it requires an admin user, so turns without one (voice satellites, automations, "
    "users who are not admins) do not get its tools"
)


async def usable_apis(
    hass: HomeAssistant, entry: ItanniXConfigEntry, llm_context: llm.LLMContext
) -> tuple[list[str], list[str]]:
    """The chosen LLM APIs this turn may use, and those it may not.

    An API that requires an admin is left out of a turn without an admin user (a voice
    satellite's, an automation's, a user's who is not an admin), and one no longer
    registered is left out of every turn. Each is reported once (per entry) in the log.
    """
    registered = {api.id: api for api in llm.async_get_apis(hass)}
    usable: list[str] = []
    excluded: list[str] = []
    admin: bool | None = None
    for api_id in selected_apis(entry):
        api = registered.get(api_id)
        if api is None:
            _report_left_out(hass, entry, api_id, _NOT_REGISTERED)
            excluded.append(api_id)
            continue
        if requires_admin(api):
            if admin is None:
                admin = await _is_admin(hass, llm_context)
            if not admin:
                _report_left_out(hass, entry, api_id, _NEEDS_ADMIN)
                excluded.append(api_id)
                continue
        usable.append(api_id)
    return usable, excluded


async def async_offered_apis(
    hass: HomeAssistant, entry: ItanniXConfigEntry, llm_context: llm.LLMContext
) -> list[str] | None:
    """The LLM APIs to offer this turn (None for none): ``usable_apis``' usable ones."""
    usable, _excluded = await usable_apis(hass, entry, llm_context)
    return usable or None


async def _user_name(hass: HomeAssistant, llm_context: llm.LLMContext) -> str | None:
    context = llm_context.context
    if context is None or not context.user_id:
        return None
    user = await hass.auth.async_get_user(context.user_id)
    return user.name if user is not None else None


def _render(
    hass: HomeAssistant, text: str, llm_context: llm.LLMContext, user: str | None
) -> str:
    try:
        rendered = template.Template(text, hass).async_render(
            {
                "ha_name": hass.config.location_name,
                "user_name": user,
                "llm_context": llm_context,
            },
            parse_result=False,
        )
    except TemplateError as err:
        LOGGER.warning("The prompt template could not be rendered: %s", err)
        return text
    return str(rendered)


async def async_get_api(
    hass: HomeAssistant, entry: ItanniXConfigEntry, llm_context: llm.LLMContext
) -> llm.APIInstance | None:
    """The options' LLM API(s) this turn may use; raises HomeAssistantError if unusable.

    Of several APIs, one that fails (it refuses this turn's user, say) is left out and
    the others are offered; only when none can be used does this raise.
    """
    if not (apis := (await usable_apis(hass, entry, llm_context))[0]):
        return None
    try:
        return await llm.async_get_api(hass, apis, llm_context)
    except HomeAssistantError:
        if len(apis) == 1:
            raise
    working: list[str] = []
    for api_id in apis:
        try:
            await llm.async_get_api(hass, api_id, llm_context)
        except HomeAssistantError as err:
            why = f"it cannot be used ({str(err) or type(err).__name__})"
            _report_left_out(hass, entry, api_id, why)
        else:
            working.append(api_id)
    return await llm.async_get_api(hass, working or apis, llm_context)


async def async_turn_prompt(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    llm_context: llm.LLMContext,
    extra_system_prompt: str | None,
    api: llm.APIInstance | None,
) -> TurnPrompt:
    """Build this turn's context for ``api`` (from ``async_get_api``)."""
    user = await _user_name(hass, llm_context)
    parts: list[str] = []
    if prompt := entry.options.get(CONF_PROMPT):
        parts.append(_render(hass, prompt, llm_context, user))
    tools = api.tools if api is not None else []
    if api is not None and api.api_prompt:
        parts.append(api.api_prompt)
    if not any(tool.name.endswith("GetDateTime") for tool in tools):
        parts.append(_render(hass, llm.DATE_TIME_PROMPT, llm_context, user).strip())
    if extra_system_prompt:
        parts.append(extra_system_prompt)
    return TurnPrompt(
        api=api,
        text="\n".join(parts),
        tool_names=frozenset(tool.name for tool in tools),
    )


async def async_spoken_turn_prompt(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    llm_context: llm.LLMContext,
    extra_system_prompt: str | None,
) -> TurnPrompt:
    """The context of a spoken turn, before the user speaks.

    A spoken turn has no user: an API that requires an admin is left out and the
    others chosen are offered (``async_get_api``). Only when none can be used does the
    turn go without Home Assistant's tools, and say so.
    """
    try:
        api = await async_get_api(hass, entry, llm_context)
    except HomeAssistantError as err:
        LOGGER.warning(
            "The assistant gets no Home Assistant tools for this spoken turn: %s", err
        )
        api = None
    return await async_turn_prompt(hass, entry, llm_context, extra_system_prompt, api)
