"""Several LLM APIs at once, and those only an admin user may use.

Since Home Assistant 2026.11 an LLM API can require an admin user ("Home Assistant"
does): Home Assistant refuses it to a turn without one, and refuses a selection that
includes it as a whole. Voice satellites and automations have no user. Whatever else is
chosen must still reach those turns, and typed turns of users who are not admins.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
from pathlib import Path

from homeassistant.components import assist_pipeline, conversation
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import Context, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent, llm
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockUser
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.itannix.prompt import async_spoken_turn_prompt, usable_apis
from tests.audio import silence, speak
from tests.emulator import EmulatedSession, Emulator, Turn

from .helpers import AGENT, async_setup_exposed_light, conversation_peers, speech
from .satellite import async_setup_satellites

HOME_ASSISTANT_API = getattr(llm, "LLM_API_HOME_ASSISTANT", None)
needs_admin_only_api = pytest.mark.skipif(
    HOME_ASSISTANT_API is None,
    reason="Home Assistant before 2026.11 has no admin-only LLM API",
)

# What core's "Home Assistant" API offers an admin (and nobody else).
ADMIN_TOOLS = {
    "homeassistant__render_template",
    "homeassistant__search_actions",
    "homeassistant__call_action",
}


class _AdminOnlyTool(llm.Tool):
    name = "AdminOnlyReport"
    description = "Report something only an admin may see."
    integration = "itannix_test"

    async def async_call(
        self,
        hass: HomeAssistant,
        tool_input: llm.ToolInput,
        llm_context: llm.LLMContext,
    ) -> llm.ToolResult:
        return llm.ToolResult(data={"report": "secret"})


class _AdminOnlyAPI(llm.API):
    """An API of another integration that only admins may use."""

    async def async_get_api_instance(
        self, llm_context: llm.LLMContext
    ) -> llm.APIInstance:
        return llm.APIInstance(
            api=self, api_prompt="", llm_context=llm_context, tools=[_AdminOnlyTool()]
        )


@pytest.fixture
def admin_only_api(hass: HomeAssistant) -> Iterator[llm.API]:
    """An admin-only API, on every Home Assistant version.

    Before 2026.11 an API has no such attribute and Home Assistant checks nothing;
    the integration still keeps an API that declares it from turns without an admin.
    """
    api = _AdminOnlyAPI(hass=hass, id="admin_only_test", name="Admin report")
    api.requires_admin = True
    unregister = llm.async_register_api(hass, api)
    yield api
    unregister()


class _BrokenAPI(llm.API):
    """An API that cannot be used right now (its service is down, say)."""

    async def async_get_api_instance(
        self, llm_context: llm.LLMContext
    ) -> llm.APIInstance:
        raise HomeAssistantError("The service behind it is down")


@pytest.fixture
async def kitchen_light(hass: HomeAssistant) -> None:
    """A light exposed to Assist, so the Assist API offers its intents."""
    await async_setup_exposed_light(hass)


async def _choose_apis(
    hass: HomeAssistant, entry: ConfigEntry, apis: list[str]
) -> None:
    """Choose the LLM APIs in the options flow, as a user does (the entry reloads)."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: apis}
    )
    if result["type"] is FlowResultType.FORM:
        # The note on an API that only admins may use.
        assert result["step_id"] == "admin_only"
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_LLM_HASS_API] == apis
    await hass.async_block_till_done()


async def _type(
    hass: HomeAssistant, text: str, user: MockUser | None
) -> conversation.ConversationResult:
    """Type ``text`` to the agent as ``user`` (None: as an automation does)."""
    return await conversation.async_converse(
        hass,
        text,
        None,
        Context(user_id=user.id if user is not None else None),
        language="en",
        agent_id=AGENT,
    )


def _tool_names(session: EmulatedSession) -> set[str]:
    return {tool["name"] for tool in session.tools}


def _has(names: set[str], tool: str) -> bool:
    """Whether ``tool`` is among ``names``.

    Home Assistant 2025.12 prefixes the tools of several APIs with their API's name.
    """
    return any(name.endswith(tool) for name in names)


def _has_turn_on(names: set[str]) -> bool:
    """Whether the Assist API's HassTurnOn is among ``names``."""
    return _has(names, "HassTurnOn")


def _left_out_warnings(caplog: pytest.LogCaptureFixture, api_id: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("custom_components.itannix")
        and record.levelno == logging.WARNING
        and f"LLM API '{api_id}'" in record.getMessage()
    ]


async def _typed_turn_tools(
    hass: HomeAssistant, emulator: Emulator, user: MockUser | None
) -> set[str]:
    """Type one turn as ``user``; it succeeds. The tools its session was given."""
    before = len(conversation_peers(emulator))
    result = await _type(hass, "Hello", user)
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(result) == "I heard: Hello"
    peers = conversation_peers(emulator)
    assert len(peers) == before + 1
    return _tool_names(peers[-1])


# 1. Home Assistant's own admin-only API next to Assist (2026.11 and later)


@needs_admin_only_api
@pytest.mark.usefixtures("kitchen_light")
async def test_non_admin_and_userless_turns_keep_assist(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    hass_read_only_user: MockUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Assist and Home Assistant chosen, turns without an admin keep Assist.

    Home Assistant refuses the pair as a whole to them: the Assist API alone is
    offered, and the log says once why the other one is left out.
    """
    assert HOME_ASSISTANT_API is not None
    await _choose_apis(hass, config_entry, ["assist", HOME_ASSISTANT_API])

    for user in (hass_read_only_user, None, hass_read_only_user):
        names = await _typed_turn_tools(hass, emulator, user)
        assert _has_turn_on(names)
        assert not names & ADMIN_TOOLS

    (warning,) = _left_out_warnings(caplog, HOME_ASSISTANT_API)
    assert "requires an admin user" in warning


@needs_admin_only_api
@pytest.mark.usefixtures("kitchen_light")
async def test_admin_gets_both_apis(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    hass_admin_user: MockUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An admin's typed turn gets the tools of both APIs; nothing is left out."""
    assert HOME_ASSISTANT_API is not None
    await _choose_apis(hass, config_entry, ["assist", HOME_ASSISTANT_API])

    names = await _typed_turn_tools(hass, emulator, hass_admin_user)

    assert _has_turn_on(names)
    assert names >= ADMIN_TOOLS
    assert not _left_out_warnings(caplog, HOME_ASSISTANT_API)


@needs_admin_only_api
async def test_usable_apis_per_user(
    hass: HomeAssistant,
    config_entry: ConfigEntry,
    hass_admin_user: MockUser,
    hass_read_only_user: MockUser,
) -> None:
    """What the conversation agent offers a turn, per user."""
    assert HOME_ASSISTANT_API is not None
    await _choose_apis(hass, config_entry, ["assist", HOME_ASSISTANT_API])

    def context(user: MockUser | None) -> llm.LLMContext:
        return llm.LLMContext(
            platform="itannix",
            context=Context(user_id=user.id if user is not None else None),
            language="en",
            assistant=conversation.DOMAIN,
            device_id=None,
        )

    assert await usable_apis(hass, config_entry, context(hass_admin_user)) == (
        ["assist", HOME_ASSISTANT_API],
        [],
    )
    for user in (hass_read_only_user, None):
        assert await usable_apis(hass, config_entry, context(user)) == (
            ["assist"],
            [HOME_ASSISTANT_API],
        )


@needs_admin_only_api
@pytest.mark.usefixtures("kitchen_light")
async def test_spoken_turn_keeps_assist(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    hass_ws_client: WebSocketGenerator,
    tmp_path: Path,
) -> None:
    """A satellite's turn (no user) gets the Assist API's tools and its reply."""
    assert HOME_ASSISTANT_API is not None
    await _choose_apis(hass, config_entry, ["assist", HOME_ASSISTANT_API])
    assert await async_setup_component(hass, "assist_satellite", {})
    assert await async_setup_component(hass, "media_player", {})
    (pipeline,) = [
        p
        for p in assist_pipeline.async_get_pipelines(hass)
        if p.conversation_engine == AGENT
    ]
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "assist_pipeline/pipeline/set_preferred", "pipeline_id": pipeline.id}
    )
    assert (await client.receive_json())["success"]
    (satellite,) = await async_setup_satellites(hass, "Kitchen satellite")
    reply = "The kitchen light is on."
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply=reply)
    )

    await satellite.talk(
        silence(0.3) + speak("Turn on the kitchen light.", tmp_path) + silence(1.2)
    )
    await hass.async_block_till_done(wait_background_tasks=True)

    assert satellite.reply() == reply
    (session,) = [s for s in emulator.sessions if s.speech_started_count]
    names = _tool_names(session)
    assert _has_turn_on(names)
    assert not names & ADMIN_TOOLS


# 2. Any admin-only API, an API gone, a value stored before the multi-select


@pytest.mark.usefixtures("kitchen_light")
async def test_admin_only_api_of_another_integration(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    admin_only_api: llm.API,
    hass_admin_user: MockUser,
    hass_read_only_user: MockUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API that declares it requires an admin reaches admins' turns only."""
    await _choose_apis(hass, config_entry, ["assist", admin_only_api.id])

    names = await _typed_turn_tools(hass, emulator, hass_read_only_user)
    assert _has_turn_on(names)
    assert not _has(names, "AdminOnlyReport")
    assert _left_out_warnings(caplog, admin_only_api.id)

    names = await _typed_turn_tools(hass, emulator, hass_admin_user)
    assert _has_turn_on(names)
    assert _has(names, "AdminOnlyReport")


@pytest.mark.usefixtures("kitchen_light")
async def test_api_no_longer_registered_is_left_out(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API gone since it was chosen (its integration removed) leaves the rest."""
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_LLM_HASS_API: ["assist", "gone"]}
    )
    await hass.config_entries.async_reload(config_entry.entry_id)
    await hass.async_block_till_done()

    names = await _typed_turn_tools(hass, emulator, None)
    names_again = await _typed_turn_tools(hass, emulator, None)

    assert _has_turn_on(names)
    assert _has_turn_on(names_again)
    (warning,) = _left_out_warnings(caplog, "gone")
    assert "registered" in warning


@pytest.mark.parametrize(
    ("stored", "control"), [("assist", True), ("none", False)], ids=["assist", "none"]
)
@pytest.mark.usefixtures("kitchen_light")
async def test_value_stored_before_the_multi_select(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    stored: str,
    control: bool,
) -> None:
    """One API ID (or "none") stored by an older version still works as it did."""
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_LLM_HASS_API: stored}
    )
    await hass.config_entries.async_reload(config_entry.entry_id)
    await hass.async_block_till_done()

    names = await _typed_turn_tools(hass, emulator, None)

    assert _has_turn_on(names) is control


@pytest.mark.usefixtures("kitchen_light")
async def test_spoken_turn_leaves_out_an_api_that_fails(
    hass: HomeAssistant,
    config_entry: ConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Of several APIs, one that fails for a spoken turn leaves the others' tools."""
    unregister = llm.async_register_api(
        hass, _BrokenAPI(hass=hass, id="broken_test", name="Broken")
    )
    try:
        await _choose_apis(hass, config_entry, ["assist", "broken_test"])
        llm_context = llm.LLMContext(
            platform="itannix",
            context=None,
            language="en",
            assistant=conversation.DOMAIN,
            device_id=None,
        )
        first = await async_spoken_turn_prompt(hass, config_entry, llm_context, None)
        second = await async_spoken_turn_prompt(hass, config_entry, llm_context, None)
    finally:
        unregister()

    assert first.api is not None
    assert _has_turn_on(set(first.tool_names))
    assert _has_turn_on(set(second.tool_names))
    (warning,) = _left_out_warnings(caplog, "broken_test")
    assert "The service behind it is down" in warning
