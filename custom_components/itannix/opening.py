"""``itannix.start_conversation``: the assistant speaks first, then listens.

On a voice satellite that can start conversations, Home Assistant plays the opening line
(through the satellite's pipeline, so in the assistant's voice when it uses the ItanniX
pipeline), keeps it in the conversation's chat log, and listens; the integration gives
that history to the realtime session when the user answers. A satellite that can only
announce, or a media player, hears the line without being able to answer.
"""

from __future__ import annotations

import asyncio
from typing import Final

from homeassistant.components import tts
from homeassistant.components.assist_satellite import AssistSatelliteEntityFeature
from homeassistant.const import ATTR_ENTITY_ID, ATTR_SUPPORTED_FEATURES, Platform
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.util.ulid import ulid_now

from .const import DOMAIN, TURN_TIMEOUT
from .entity import async_entity_id
from .playback import async_play
from .realtime import ItanniXError
from .runtime import ItanniXConfigEntry, async_note_failure

ATTR_MESSAGE: Final = "message"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
SATELLITE_DOMAIN: Final = "assist_satellite"
# Used only when the automation gives no opening line: the assistant words it itself.
OPENING_INSTRUCTIONS: Final = (
    "Start a conversation with the user: greet them in one short sentence and ask "
    "how you can help. Answer in the user's language."
)


def _entry(hass: HomeAssistant, entry_id: str | None) -> ItanniXConfigEntry:
    entries: list[ItanniXConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    if entry_id is not None:
        entries = [entry for entry in entries if entry.entry_id == entry_id]
    if len(entries) != 1:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="choose_entry" if entries else "no_entry",
        )
    return entries[0]


async def _async_opening_line(hass: HomeAssistant, entry: ItanniXConfigEntry) -> str:
    """The assistant's own opening line, from a short-lived session."""
    sessions = entry.runtime_data.sessions
    key = ulid_now()
    try:
        # Bounded like any turn: an answer that never ends must not hang the automation.
        async with asyncio.timeout(TURN_TIMEOUT):
            live = await sessions.async_get(key, audio=False)
            try:
                reply = await live.session.respond(OPENING_INSTRUCTIONS)
                return (await reply.text()).strip()
            finally:
                sessions.turn_finished(live)
    except TimeoutError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="turn_timeout"
        ) from err
    except ItanniXError as err:
        # Credentials the service refused start reauthentication, as in a turn.
        async_note_failure(hass, entry, err)
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="turn_failed",
            translation_placeholders={"error": err.message},
        ) from err
    finally:
        await sessions.async_close(key)


def _satellite_action(features: int) -> tuple[str, str] | None:
    """The satellite action that speaks the line, and the field that carries it.

    Starting a conversation (speak, then listen) is preferred to only announcing.
    """
    if features & AssistSatelliteEntityFeature.START_CONVERSATION:
        return "start_conversation", "start_message"
    if features & AssistSatelliteEntityFeature.ANNOUNCE:
        return "announce", "message"
    return None


async def async_start_conversation(call: ServiceCall) -> None:
    """Speak an opening line on each target, and listen where the target can."""
    hass = call.hass
    entry = _entry(hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
    message: str = call.data.get(ATTR_MESSAGE) or await _async_opening_line(hass, entry)
    for entity_id in call.data[ATTR_ENTITY_ID]:
        state = hass.states.get(entity_id)
        features: int = state.attributes.get(ATTR_SUPPORTED_FEATURES, 0) if state else 0
        domain = entity_id.partition(".")[0]
        if domain == SATELLITE_DOMAIN and (
            satellite_action := _satellite_action(features)
        ):
            action, field = satellite_action
            await hass.services.async_call(
                SATELLITE_DOMAIN,
                action,
                {ATTR_ENTITY_ID: entity_id, field: message},
                blocking=True,
                context=call.context,
            )
        elif domain == "media_player" and (
            engine := async_entity_id(hass, entry, Platform.TTS, "tts")
        ):
            # As tts.speak does: the player resolves the media source itself.
            await async_play(
                hass,
                entity_id,
                tts.generate_media_source_id(hass, message, engine=engine),
                call.context,
            )
        else:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="cannot_start_conversation",
                translation_placeholders={"entity_id": entity_id},
            )
