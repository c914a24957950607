"""Helpers the integration tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import ClientSession
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.core import Context, HomeAssistant
from homeassistant.setup import async_setup_component

from tests.conftest import WORKSPACE_KEY
from tests.emulator import EmulatedSession, Emulator

from .conftest import CLIENT_ID

AGENT = "conversation.itannix_assistant"


async def say(
    hass: HomeAssistant, text: str, conversation_id: str | None = None
) -> conversation.ConversationResult:
    """Type ``text`` to the ItanniX agent, as the Assist dialog does."""
    return await conversation.async_converse(
        hass, text, conversation_id, Context(), language="en", agent_id=AGENT
    )


def speech(result: conversation.ConversationResult) -> str:
    """What the user reads."""
    return str(result.response.speech["plain"]["speech"])


def conversation_peers(emulator: Emulator) -> list[EmulatedSession]:
    """Realtime sessions that carried conversation turns (not the enrollment's)."""
    return [s for s in emulator.sessions if s.has_peer and s.received_events]


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Wait, bounded, for something the other side does in its own time."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def enroll_elsewhere(emulator: Emulator) -> None:
    """Another device enrolls CLIENT_ID with a secret of its own."""
    async with ClientSession() as session:
        response = await session.post(
            f"{emulator.url}/v1/realtime/sessions",
            json={"modalities": ["text"]},
            headers={
                "X-Workspace-Key": WORKSPACE_KEY,
                "X-Client-Id": CLIENT_ID,
                "X-Client-Secret": "another-device-secret-0123456789abcdef",
            },
        )
        assert response.status == 200


def template_light(name: str, switch: str) -> dict[str, Any]:
    """A real light (a template light over an input_boolean) for the template config."""
    return {
        "name": name,
        "state": f"{{{{ is_state('input_boolean.{switch}', 'on') }}}}",
        "turn_on": {
            "action": "input_boolean.turn_on",
            "target": {"entity_id": f"input_boolean.{switch}"},
        },
        "turn_off": {
            "action": "input_boolean.turn_off",
            "target": {"entity_id": f"input_boolean.{switch}"},
        },
    }


async def async_setup_exposed_light(hass: HomeAssistant) -> None:
    """A real kitchen light exposed to Assist, so the Assist API offers its intents."""
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"kitchen": {}}}
    )
    assert await async_setup_component(
        hass,
        "template",
        {"template": [{"light": [template_light("Kitchen light", "kitchen")]}]},
    )
    await hass.async_block_till_done()
    async_expose_entity(hass, "conversation", "light.kitchen_light", True)
