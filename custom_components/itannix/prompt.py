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

from .const import LOGGER
from .runtime import ItanniXConfigEntry


@dataclass(frozen=True, slots=True)
class TurnPrompt:
    """The LLM API a turn offers (if any) and the context it adds."""

    api: llm.APIInstance | None = None
    text: str = ""
    tool_names: frozenset[str] = field(default_factory=frozenset)


def selected_apis(entry: ItanniXConfigEntry) -> list[str]:
    """The LLM APIs chosen in the options (one or several)."""
    value: Any = entry.options.get(CONF_LLM_HASS_API)
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(api) for api in value]


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
    """The options' LLM API(s) for this turn; raises HomeAssistantError if unusable."""
    if not (apis := selected_apis(entry)):
        return None
    return await llm.async_get_api(hass, apis, llm_context)


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

    An LLM API that cannot be used leaves the turn without its tools, and says so.
    """
    try:
        api = await async_get_api(hass, entry, llm_context)
    except HomeAssistantError as err:
        LOGGER.warning(
            "The assistant gets no Home Assistant tools for this spoken turn: %s", err
        )
        api = None
    return await async_turn_prompt(hass, entry, llm_context, extra_system_prompt, api)
