"""What the network and the service throw at a running Home Assistant, as a user sees it.

Redirects, absurd waits, a lost network mid-conversation, more conversations than
sessions allowed: each ends in a clear message or goes unnoticed, and nothing leaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import gc
import logging
import weakref

import aioice.ice
from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import intent
import pytest

from custom_components.itannix.const import (
    CONF_ASSISTANT_ID,
    CONF_MAX_SESSIONS,
    CONF_WORKSPACE_KEY,
    DOMAIN,
)
from tests.emulator import Emulator
from tests.hostile import HostilePeer
from tests.network import NetworkProfile

from .conftest import user_input
from .helpers import conversation_peers, say, speech, until


@pytest.fixture
async def elsewhere(socket_enabled: None) -> AsyncIterator[HostilePeer]:
    """Another origin, where a redirect points: it records whatever reaches it."""
    async with HostilePeer() as peer:
        yield peer


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE consent checks every 0.1 s instead of 5 s: a lost network shows in seconds."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)


def _no_credentials(peer: HostilePeer) -> bool:
    return not any(
        "X-Client-Secret" in r.headers or "X-Workspace-Key" in r.headers
        for r in peer.requests
    )


async def test_setup_form_refuses_a_redirect(
    hass: HomeAssistant, emulator: Emulator, elsewhere: HostilePeer
) -> None:
    """The user reads where the server redirected; the credentials never went there."""
    emulator.faults.redirect["sessions"] = (
        308,
        f"{elsewhere.url}/v1/realtime/sessions",
    )
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(emulator)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "redirected"}
    assert result["description_placeholders"]["location"] == elsewhere.url
    assert elsewhere.requests == []
    # Fixed at the server: the same form goes through.
    emulator.faults.redirect.clear()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(emulator)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_setup_stops_at_a_redirect(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    elsewhere: HostilePeer,
) -> None:
    """A server that starts redirecting: set-up fails for good (reconfigure), no leak."""
    emulator.faults.redirect["sessions"] = (302, f"http://{elsewhere.url[7:]}/x")
    assert await hass.config_entries.async_reload(config_entry.entry_id) is False
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    assert config_entry.reason is not None
    assert elsewhere.url in config_entry.reason
    assert _no_credentials(elsewhere)
    assert elsewhere.requests == []


@pytest.mark.parametrize(
    "retry_after",
    ["inf", "1e400", "99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"],
)
async def test_absurd_retry_after_reads_as_a_minute(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry, retry_after: str
) -> None:
    emulator.faults.status["sessions"] = 429
    emulator.faults.retry_after = retry_after
    result = await say(hass, "Hello")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert "try again in a minute" in speech(result)
    assert "inf" not in speech(result)


async def test_retry_after_is_rounded_up(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    emulator.faults.status["sessions"] = 429
    emulator.faults.retry_after = "0.4"
    result = await say(hass, "Hello")
    assert "try again in 1 s" in speech(result)


async def test_typed_conversation_receives_no_audio_until_it_speaks(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """A typed session is offered send-only: the service streams it no audio."""
    await say(hass, "Hello")
    (session,) = conversation_peers(emulator)
    assert not session.sends_audio


async def test_lost_network_mid_turn_is_asked_again(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    fast_consent: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The network vanishes before the reply: the user still gets it, once.

    One line says the session dropped; no error, no stack trace; the fresh session was
    told the conversation so far.
    """
    emulator.network = NetworkProfile()
    first = await say(hass, "My name is Sam.")
    (dropped,) = conversation_peers(emulator)
    dropped.cut_network()
    result = await say(hass, "What is my name?", first.conversation_id)
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert "What is my name?" in speech(result)
    peers = conversation_peers(emulator)
    assert len(peers) == 2
    # Replayed to the fresh session, then asked: the context survived the drop.
    user_items = [
        e["item"]["content"][0]["text"]
        for e in peers[1].received_events
        if e.get("type") == "conversation.item.create"
        and e["item"].get("role") == "user"
    ]
    assert user_items == ["My name is Sam.", "What is my name?"]
    ours = [r for r in caplog.records if r.name.startswith("custom_components.itannix")]
    warnings = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "dropped" in warnings[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_dropped_peer_is_freed(
    hass: HomeAssistant,
    emulator: Emulator,
    config_entry: ConfigEntry,
    fast_consent: None,
) -> None:
    emulator.network = NetworkProfile()
    await say(hass, "Hello")
    sessions = config_entry.runtime_data.sessions
    (live,) = sessions._live.values()
    pc = weakref.ref(live.session.connection.peer_connection)
    connection = live.session.connection
    del live
    conversation_peers(emulator)[0].cut_network()
    async with asyncio.timeout(20):
        await connection.wait_closed()
    del connection
    assert sessions.diagnostics()["open"] == 0
    await hass.async_block_till_done()
    for _ in range(3):
        gc.collect()
    assert pc() is None


async def _set_max_sessions(
    hass: HomeAssistant, config_entry: ConfigEntry, count: int
) -> None:
    """Set "Open conversations at most" in the options, as a user does."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_MAX_SESSIONS: count}
    )
    await hass.async_block_till_done()


async def test_session_cap_closes_the_longest_idle(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Past the cap the conversation idle longest is closed; it continues if used."""
    await _set_max_sessions(hass, config_entry, 2)
    first = await say(hass, "One")
    second = await say(hass, "Two")
    await say(hass, "One again", first.conversation_id)  # "Two" is now idle longest
    await say(hass, "Three")
    peers = conversation_peers(emulator)
    await until(lambda: peers[1].closed)
    assert not peers[0].closed
    assert config_entry.runtime_data.sessions.diagnostics()["open"] == 2
    # The closed conversation goes on: a fresh session, told what was said.
    result = await say(hass, "Two again", second.conversation_id)
    assert "Two again" in speech(result)


async def test_session_cap_with_every_session_busy(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """No session can be closed for a new conversation: the user is told, not hung."""
    await _set_max_sessions(hass, config_entry, 1)
    sessions = config_entry.runtime_data.sessions
    live = await sessions.async_get("busy", audio=False)
    try:
        result = await say(hass, "Hello")
    finally:
        sessions.turn_finished(live)
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert "1 conversations are already in progress" in speech(result)
    result = await say(hass, "Hello")  # the busy one is idle now: it makes room
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE


# -- Values no HTTP header can carry ------------------------------------------------


async def test_setup_form_refuses_a_key_no_header_can_carry(
    hass: HomeAssistant, emulator: Emulator
) -> None:
    """Pasted with a stray character: said on its field, nothing sent."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(emulator, workspace_key="wk-\u00e9t\u00e9")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_WORKSPACE_KEY: "invalid_characters"}
    assert not emulator.requests


async def test_options_refuse_an_assistant_id_no_header_can_carry(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """The assistant ID is checked when saved, not at every turn; blanks are trimmed."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_ASSISTANT_ID: "asst\nkitchen"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_ASSISTANT_ID: "invalid_characters"}
    assert CONF_ASSISTANT_ID not in config_entry.options
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_ASSISTANT_ID: " asst_kitchen "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_entry.options[CONF_ASSISTANT_ID] == "asst_kitchen"
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED
    assert emulator.sessions[-1].assistant_id == "asst_kitchen"


async def test_setup_stops_at_a_stored_key_no_header_can_carry(
    hass: HomeAssistant, emulator: Emulator, config_entry: ConfigEntry
) -> None:
    """Stored before this check: set-up fails for good and names the field."""
    hass.config_entries.async_update_entry(
        config_entry, data={**config_entry.data, CONF_WORKSPACE_KEY: "wk one"}
    )
    requests = len(emulator.requests)
    assert await hass.config_entries.async_reload(config_entry.entry_id) is False
    assert config_entry.state is ConfigEntryState.SETUP_ERROR
    assert config_entry.reason is not None
    assert "Workspace Key" in config_entry.reason
    assert len(emulator.requests) == requests
