"""The config flow: TOFU enrollment against the emulator, reauth, reconfigure, options."""

from __future__ import annotations

import json
from pathlib import Path
import re
import socket
from typing import Any
from unittest.mock import patch
import uuid

import aiohttp
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntry,
    ConfigEntryState,
)
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, llm
from homeassistant.helpers.selector import SelectSelector, TextSelector
from homeassistant.helpers.translation import async_get_translations
import pytest

from custom_components.itannix.const import (
    CONF_ASSISTANT_ID,
    CONF_BASE_URL,
    CONF_CLIENT_ID,
    CONF_IDLE_TIMEOUT,
    CONF_MAX_SESSIONS,
    CONF_VOICE,
    CONF_WORKSPACE_KEY,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_SESSIONS,
    DOMAIN,
)
from custom_components.itannix.secret_store import get_secret_store
from tests.emulator import Emulator
from tests.network import NoSuchNameResolver

from .conftest import CLIENT_ID, user_input
from .helpers import enroll_elsewhere


async def _start(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return str(result["flow_id"])


async def _shown(hass: HomeAssistant, result: Any) -> dict[str, str]:
    """The form's errors as the frontend shows them: translated, placeholders filled."""
    texts = await async_get_translations(hass, "en", "config", [DOMAIN])
    placeholders = result.get("description_placeholders") or {}
    return {
        field: texts[f"component.{DOMAIN}.config.error.{key}"].format(**placeholders)
        for field, key in result["errors"].items()
    }


async def test_user_flow_enrolls_and_keeps_secret_out_of_entry(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """A user gets an entry; the secret is enrolled, stored privately, never in data."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    schema = result["data_schema"].schema
    defaults = {str(key): key.default() for key in schema if callable(key.default)}
    # A fresh UUID is offered and the production server is the default.
    uuid.UUID(defaults[CONF_CLIENT_ID])
    assert defaults[CONF_BASE_URL] == DEFAULT_BASE_URL

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.unique_id == CLIENT_ID
    assert entry.data == {
        CONF_WORKSPACE_KEY: "wk-test",
        CONF_CLIENT_ID: CLIENT_ID,
        CONF_BASE_URL: emulator.url,
    }
    secret = await get_secret_store(hass).async_get(CLIENT_ID)
    assert secret is not None
    assert len(secret) >= 32
    assert secret not in repr(entry.as_dict())
    # Like core's LLM integrations, a new entry controls Home Assistant through Assist.
    assert entry.options == {CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]}
    assert emulator.is_enrolled(CLIENT_ID)
    assert emulator.sessions[0].app_source == "home-assistant"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def test_same_client_cannot_be_added_twice(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """The Client ID is the unique ID."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_non_uuid_client_id_warns_then_is_accepted(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """A dashboard Client ID that is not a UUID gets a warning, not a refusal."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, client_id="kitchen-speaker")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_CLIENT_ID: "client_id_not_uuid"}
    assert not emulator.sessions, "nothing is enrolled before the user confirms"

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, client_id="kitchen-speaker")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert emulator.is_enrolled("kitchen-speaker")


async def test_empty_client_id(hass: HomeAssistant, emulator: Emulator) -> None:
    """An empty Client ID is asked for again."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, client_id="  ")
    )
    assert result["errors"] == {CONF_CLIENT_ID: "client_id_empty"}


@pytest.mark.parametrize(
    "url", ["http://192.0.2.10:8080", "ftp://127.0.0.1", "not a url"]
)
async def test_plain_http_only_to_loopback(
    hass: HomeAssistant, emulator: Emulator, url: str
) -> None:
    """The secret never travels in clear text to another machine."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, base_url=url)
    )
    assert result["errors"] == {CONF_BASE_URL: "invalid_url"}
    assert not emulator.requests


async def test_wrong_workspace_key(hass: HomeAssistant, emulator: Emulator) -> None:
    """A rejected Workspace Key is shown on its field, and can be fixed."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, workspace_key="wk-wrong")
    )
    assert result["type"] is FlowResultType.FORM
    assert await _shown(hass, result) == {
        CONF_WORKSPACE_KEY: "ItanniX rejected this Workspace Key. Copy it again from "
        "the ItanniX dashboard (Settings → Workspace)."
    }
    assert not emulator.is_enrolled(CLIENT_ID)

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_client_already_enrolled_elsewhere(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """A Client ID enrolled with another secret explains the dashboard reset."""
    await enroll_elsewhere(emulator)
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    # On the Client ID, which this form can change; said once, not echoed again.
    assert await _shown(hass, result) == {
        CONF_CLIENT_ID: "This Client ID is already enrolled with another secret. "
        "Reset the client's secret in the ItanniX dashboard (client settings), or "
        "use a new Client ID, then submit again."
    }
    assert await get_secret_store(hass).async_get(CLIENT_ID) is None

    emulator.reset_enrollment(CLIENT_ID)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_cannot_connect_then_recovers(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """An unreachable server is reported; once it is back, setup completes."""
    flow_id = await _start(hass)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, base_url=f"http://127.0.0.1:{closed_port}")
    )
    assert await _shown(hass, result) == {
        "base": "127.0.0.1 refused the connection: nothing answers there on that "
        "port. Check the server URL."
    }

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        (
            429,
            "rate_limited",
            "ItanniX asks to slow down. Wait a minute, then submit again.",
        ),
        (500, "unknown", "Unexpected error. Try later"),
        (503, "unknown", "Unexpected error. Try later"),
    ],
)
async def test_service_errors(
    hass: HomeAssistant, emulator: Emulator, status: int, error: str, shown: str
) -> None:
    """Rate limits and server failures are named, and nothing is stored."""
    emulator.faults.status["sessions"] = status
    emulator.faults.body["sessions"] = {"message": "Busy", "hint": "Try later"}
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["errors"] == {"base": error}
    assert await _shown(hass, result) == {"base": shown}
    assert await get_secret_store(hass).async_get(CLIENT_ID) is None


async def test_malformed_answer_is_unknown(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """An SDP answer that is not SDP is an unexpected error, not a crash."""
    emulator.faults.malformed_sdp = True
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["errors"] == {"base": "unknown"}


async def test_unexpected_exception_is_unknown(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """A bug below the flow still ends in a form with an error, not a stack trace."""
    flow_id = await _start(hass)
    with patch(
        "custom_components.itannix.config_flow.RealtimeConnection.connect",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(
            flow_id, user_input(emulator)
        )
    assert result["errors"] == {"base": "unknown"}


async def test_reauth_enrolls_new_secret_after_dashboard_reset(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """After a reset, reauth enrolls a new secret; a failed try changes nothing."""
    old_secret = await get_secret_store(hass).async_get(CLIENT_ID)
    # The secret is reset in the dashboard and another device takes the Client ID.
    emulator.reset_enrollment(CLIENT_ID)
    await enroll_elsewhere(emulator)
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    flow_id = flows[0]["flow_id"]

    result = await hass.config_entries.flow.async_configure(flow_id, {})
    # This form cannot take another Client ID: it says what to do, once.
    assert await _shown(hass, result) == {
        "base": "ItanniX still holds the earlier secret for this client. Reset the "
        "secret in the client's settings in the ItanniX dashboard first, then "
        "submit again."
    }
    assert await get_secret_store(hass).async_get(CLIENT_ID) == old_secret

    emulator.reset_enrollment(CLIENT_ID)
    result = await hass.config_entries.flow.async_configure(flow_id, {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    new_secret = await get_secret_store(hass).async_get(CLIENT_ID)
    assert new_secret not in (None, old_secret)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED


async def test_reauth_takes_a_replaced_workspace_key(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """A key replaced in the dashboard is fixed from the reauth form; no reset needed."""
    secret = await get_secret_store(hass).async_get(CLIENT_ID)
    emulator.workspace_key = "wk-rotated"
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == "reauth"

    # The stored key is offered, and rejected on its field.
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
    assert result["errors"] == {CONF_WORKSPACE_KEY: "invalid_workspace_key"}

    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_WORKSPACE_KEY: " wk-rotated "}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert config_entry.data[CONF_WORKSPACE_KEY] == "wk-rotated"
    # The enrolled secret still held: it was kept, not replaced.
    assert await get_secret_store(hass).async_get(CLIENT_ID) == secret
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED


async def test_blocked_media_is_not_called_unreachable(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """HTTPS works but WebRTC's UDP is blocked: the form says so, not "unreachable"."""
    emulator.faults.media_blocked = True
    flow_id = await _start(hass)
    with patch("custom_components.itannix.config_flow.CONNECT_TIMEOUT", 3.0):
        result = await hass.config_entries.flow.async_configure(
            flow_id, user_input(emulator)
        )
    assert await _shown(hass, result) == {
        "base": "127.0.0.1 answered, but the voice connection (WebRTC: UDP, or a "
        "TURN relay) could not be opened. A firewall may block outgoing UDP from "
        "this machine: allow it, then submit again."
    }
    assert await get_secret_store(hass).async_get(CLIENT_ID) is None
    for far_end in emulator.sessions:
        await far_end.close()


async def test_a_server_name_that_does_not_resolve(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """A typo in the host reads as such, not as aiohttp's "ssl:default [...]"."""
    flow_id = await _start(hass)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=NoSuchNameResolver())
    )
    try:
        with patch(
            "custom_components.itannix.config_flow.async_get_clientsession",
            return_value=session,
        ):
            result = await hass.config_entries.flow.async_configure(
                flow_id, user_input(emulator, base_url="https://api.itanix.com")
            )
    finally:
        await session.close()
    assert await _shown(hass, result) == {
        "base": "The server name api.itanix.com could not be found. Check the server "
        "URL for a typo, then this machine's DNS and internet connection."
    }


async def test_reauth_with_a_server_url_no_longer_allowed(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """A stored URL the client now refuses is named, and nothing is sent anywhere."""
    good = dict(config_entry.data)
    hass.config_entries.async_update_entry(
        config_entry, data={**good, CONF_BASE_URL: "http://192.0.2.1"}
    )
    await hass.config_entries.async_reload(config_entry.entry_id)
    # Retrying would not help: the entry fails until it is reconfigured.
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    asked = len(emulator.requests)
    config_entry.async_start_reauth(hass)
    await hass.async_block_till_done()
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
    assert result["errors"] == {"base": "invalid_url"}
    assert len(emulator.requests) == asked

    hass.config_entries.async_update_entry(config_entry, data=good)
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.LOADED


async def _reconfigure(hass: HomeAssistant, entry: ConfigEntry) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    assert result["type"] is FlowResultType.FORM
    return dict(result)


async def test_reconfigure(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """The Workspace Key can be changed; a rejected one is reported and not saved."""
    result = await _reconfigure(hass, config_entry)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_WORKSPACE_KEY: "wk-wrong", CONF_BASE_URL: emulator.url},
    )
    assert result["errors"] == {CONF_WORKSPACE_KEY: "invalid_workspace_key"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_WORKSPACE_KEY: "wk-test", CONF_BASE_URL: "http://192.0.2.1"},
    )
    assert result["errors"] == {CONF_BASE_URL: "invalid_url"}
    assert config_entry.data[CONF_WORKSPACE_KEY] == "wk-test"

    emulator.workspace_key = "wk-rotated"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_WORKSPACE_KEY: "wk-rotated", CONF_BASE_URL: emulator.url + "/"},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert config_entry.data[CONF_WORKSPACE_KEY] == "wk-rotated"
    assert config_entry.data[CONF_BASE_URL] == emulator.url
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED


async def test_reconfigure_without_secret(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """With the secret gone, reconfigure points to re-authentication."""
    await get_secret_store(hass).async_remove(CLIENT_ID)
    result = await _reconfigure(hass, config_entry)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_WORKSPACE_KEY: "wk-test", CONF_BASE_URL: emulator.url},
    )
    assert result["errors"] == {"base": "secret_missing"}


async def test_options(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Options are saved; the LLM APIs as a list (empty: no control), empty fields left out."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    selector = result["data_schema"].schema[CONF_LLM_HASS_API]
    assert isinstance(selector, SelectSelector)
    assert selector.config["multiple"] is True
    assert selector.config["translation_key"] == CONF_LLM_HASS_API
    apis = selector.config["options"]
    # Home Assistant names its APIs: "Assist" up to 2026.10, "Device control" since.
    (assist,) = [
        api for api in llm.async_get_apis(hass) if api.id == llm.LLM_API_ASSIST
    ]
    assert {"value": "assist", "label": assist.name} in apis
    # There is no "No control" entry any more: none chosen is no control.
    assert "none" not in [api["value"] for api in apis]
    # A new entry has Assist chosen.
    assert _suggested(result, CONF_LLM_HASS_API) == ["assist"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_ASSISTANT_ID: "asst_kitchen",
            CONF_LLM_HASS_API: ["assist"],
            CONF_PROMPT: "Call me Sam.",
            CONF_IDLE_TIMEOUT: 120,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options == {
        CONF_ASSISTANT_ID: "asst_kitchen",
        CONF_LLM_HASS_API: ["assist"],
        CONF_PROMPT: "Call me Sam.",
        CONF_IDLE_TIMEOUT: 120,
        CONF_MAX_SESSIONS: DEFAULT_MAX_SESSIONS,  # the default, shown and kept
    }
    await hass.async_block_till_done()
    # The entry reloaded with the new assistant: its session request names it.
    assert emulator.sessions[-1].assistant_id == "asst_kitchen"

    # Shown again as chosen; then none chosen.
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert _suggested(result, CONF_LLM_HASS_API) == ["assist"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_ASSISTANT_ID: "", CONF_LLM_HASS_API: [], CONF_IDLE_TIMEOUT: 300},
    )
    assert config_entry.options == {
        CONF_LLM_HASS_API: [],
        CONF_IDLE_TIMEOUT: 300,
        CONF_MAX_SESSIONS: DEFAULT_MAX_SESSIONS,
    }
    await hass.async_block_till_done()

    # Left out of the form altogether (the frontend may send nothing): none either.
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_IDLE_TIMEOUT: 300}
    )
    assert config_entry.options[CONF_LLM_HASS_API] == []


def _suggested(result: Any, key: str) -> Any:
    """The value a form shows in a field before the user changes it."""
    for marker in result["data_schema"].schema:
        if marker == key:
            return (marker.description or {}).get("suggested_value")
    raise AssertionError(f"no {key} in the form")


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("assist", ["assist"]),  # one API, before the multi-select
        ("none", []),  # "No control", before the multi-select
        (["assist", "gone"], ["assist"]),  # an API no longer registered
        (None, []),  # never chosen
    ],
    ids=["single", "none", "gone", "unset"],
)
async def test_options_llm_apis_stored_before(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    stored: Any,
    shown: list[str],
) -> None:
    """LLM APIs stored by an older version show as the list they mean, and save so."""
    options = {} if stored is None else {CONF_LLM_HASS_API: stored}
    hass.config_entries.async_update_entry(config_entry, options=options)
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert _suggested(result, CONF_LLM_HASS_API) == shown
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: shown, CONF_IDLE_TIMEOUT: 300}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options[CONF_LLM_HASS_API] == shown
    await hass.async_block_till_done()


class _AdminOnlyAPI(llm.API):
    async def async_get_api_instance(
        self, llm_context: llm.LLMContext
    ) -> llm.APIInstance:
        return llm.APIInstance(
            api=self, api_prompt="", llm_context=llm_context, tools=[]
        )


def _admin_only_api(hass: HomeAssistant) -> str:
    """Register an API that only admins may use; return its ID.

    Home Assistant's own ("Home Assistant") exists since 2026.11 only; this one is
    there on every version (before 2026.11 nothing in Home Assistant checks it).
    """
    api = _AdminOnlyAPI(hass=hass, id="admin_only_test", name="Admin report")
    api.requires_admin = True
    llm.async_register_api(hass, api)
    return api.id


async def test_options_admin_only_api_says_what_it_leaves_out(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """An API only admins may use is marked; choosing it shows a note, then saves."""
    api_id = _admin_only_api(hass)
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    apis = result["data_schema"].schema[CONF_LLM_HASS_API].config["options"]
    assert {"value": api_id, "label": "Admin report (admins only)"} in apis

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: ["assist", api_id]}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "admin_only"
    assert result["description_placeholders"] == {"apis": "Admin report"}
    # Not saved yet: still the new entry's Assist.
    assert config_entry.options == {CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]}
    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options[CONF_LLM_HASS_API] == ["assist", api_id]
    await hass.async_block_till_done()

    # Chosen already: saving other options again does not repeat the note.
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_LLM_HASS_API: ["assist", api_id], CONF_IDLE_TIMEOUT: 60},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options[CONF_IDLE_TIMEOUT] == 60


@pytest.mark.skipif(
    not hasattr(llm, "LLM_API_HOME_ASSISTANT"),
    reason="Home Assistant before 2026.11 has no admin-only LLM API",
)
async def test_options_home_assistant_api_is_marked_admins_only(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Home Assistant's own admin-only API is offered, marked, with the note."""
    api_id = llm.LLM_API_HOME_ASSISTANT
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    apis = result["data_schema"].schema[CONF_LLM_HASS_API].config["options"]
    assert {"value": api_id, "label": "Home Assistant (admins only)"} in apis
    # The translated label the frontend shows instead.
    translations = await async_get_translations(hass, "en", "selector", [DOMAIN])
    label = translations[
        f"component.{DOMAIN}.selector.{CONF_LLM_HASS_API}.options.{api_id}"
    ]
    assert "admins only" in label
    assert "voice satellites" in label

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: [api_id]}
    )
    assert result["step_id"] == "admin_only"
    assert result["description_placeholders"] == {"apis": "Home Assistant"}
    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert config_entry.options[CONF_LLM_HASS_API] == [api_id]
    await hass.async_block_till_done()


async def test_options_voice_is_picked_from_the_workspace(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """The voice is a pick list of the workspace's voices; the choice is saved."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    selector = result["data_schema"].schema[CONF_VOICE]
    assert isinstance(selector, SelectSelector)
    assert selector.config["options"] == [
        {"value": "v_alloy", "label": "Alloy"},
        {"value": "v_echo", "label": "Echo"},
        {"value": "v_my_voice", "label": "My Voice"},
    ]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VOICE: "v_echo", CONF_IDLE_TIMEOUT: 300}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options[CONF_VOICE] == "v_echo"
    await hass.async_block_till_done()

    # A voice since removed from the workspace stays in the list, so the form
    # still submits as it is.
    hass.config_entries.async_update_entry(
        config_entry, options={CONF_VOICE: "v_retired"}
    )
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    options = result["data_schema"].schema[CONF_VOICE].config["options"]
    assert options[-1] == {"value": "v_retired", "label": "v_retired"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VOICE: "v_retired", CONF_IDLE_TIMEOUT: 300}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("status", "body"), [(503, None), (200, {"voices": []})], ids=["down", "none"]
)
async def test_options_voice_falls_back_to_free_text(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    status: int,
    body: dict[str, Any] | None,
) -> None:
    """Without a voice list the form still opens, with a text field for the voice."""
    emulator.faults.status["voices"] = status
    if body is not None:
        emulator.faults.body["voices"] = body
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert isinstance(result["data_schema"].schema[CONF_VOICE], TextSelector)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VOICE: "v_echo", CONF_IDLE_TIMEOUT: 300}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options[CONF_VOICE] == "v_echo"
    await hass.async_block_till_done()


async def test_options_of_an_entry_that_is_not_set_up(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """With the service down at start-up, the options still open and save."""
    emulator.faults.status["sessions"] = 503
    await hass.config_entries.async_reload(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_RETRY
    asked = len(emulator.requests)
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert isinstance(result["data_schema"].schema[CONF_VOICE], TextSelector)
    assert len(emulator.requests) == asked, "nothing to ask without a client"

    emulator.faults.status.clear()
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VOICE: "v_echo", CONF_IDLE_TIMEOUT: 300}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert config_entry.options[CONF_VOICE] == "v_echo"
    assert config_entry.state is ConfigEntryState.LOADED


async def test_second_client_is_a_second_entry(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Two clients of one workspace live side by side, each with its own secret."""
    flow_id = await _start(hass)
    other = str(uuid.uuid4())
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator, client_id=other)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    store = get_secret_store(hass)
    assert await store.async_get(other) != await store.async_get(CLIENT_ID)


_COMPONENT = Path(__file__).parents[2] / "custom_components" / DOMAIN


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", text))


async def test_forms_and_actions_are_translated(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Like hassfest: forms and actions have their texts, placeholders are given.

    Each setup form has a description, each field a label and a description, and the
    English translation is strings.json.
    """
    strings = json.loads((_COMPONENT / "strings.json").read_text(encoding="utf-8"))
    english = json.loads(
        (_COMPONENT / "translations" / "en.json").read_text(encoding="utf-8")
    )
    assert english == strings

    forms = [
        (
            "config",
            await hass.config_entries.flow.async_init(
                DOMAIN, context={"source": SOURCE_USER}
            ),
        ),
        ("config", await _reconfigure(hass, config_entry)),
        (
            "options",
            await hass.config_entries.options.async_init(config_entry.entry_id),
        ),
    ]
    for section, form in forms:
        step = strings[section]["step"][form["step_id"]]
        for text in (step.get("title", ""), step.get("description", "")):
            assert _placeholders(text) <= set(form["description_placeholders"] or {})
        if section == "config":
            assert step.get("description"), form["step_id"]
        for key in form["data_schema"].schema:
            assert step["data"].get(str(key)), (form["step_id"], key)
            assert step["data_description"].get(str(key)), (form["step_id"], key)

    # The reconfigure form says which client it changes.
    reconfigure = forms[1][1]
    assert reconfigure["description_placeholders"]["client_id"] == CLIENT_ID
    # Extra instructions apply in every conversation, with or without control.
    prompt = strings["options"]["step"]["init"]["data_description"][CONF_PROMPT]
    assert "every conversation" in prompt
    # An empty function name on the device trigger is any function.
    assert "any function" in strings["device_automation"]["extra_fields"]["function"]

    # Each action has a name, and none reads like one of core's.
    services = await async_get_translations(hass, "en", "services", [DOMAIN])
    for action in ("function_call_response", "start_conversation"):
        assert services[f"component.{DOMAIN}.services.{action}.name"]
    assert "ItanniX" in services[f"component.{DOMAIN}.services.start_conversation.name"]


async def test_entry_title_names_the_client(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """Each entry's title tells its client apart: the Client ID's first characters."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"ItanniX ({CLIENT_ID[:8]})"
    await hass.async_block_till_done()
    # The device (and so the entity IDs) keep the plain name.
    (device,) = dr.async_entries_for_config_entry(
        dr.async_get(hass), result["result"].entry_id
    )
    assert device.name == "ItanniX"
    assert hass.states.get("conversation.itannix_assistant") is not None
