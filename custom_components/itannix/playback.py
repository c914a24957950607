"""Playing the assistant's voice on a media player chosen in the options."""

from __future__ import annotations

from homeassistant.components.media_player.const import (
    ATTR_MEDIA_ANNOUNCE,
    ATTR_MEDIA_CONTENT_ID,
    ATTR_MEDIA_CONTENT_TYPE,
    DOMAIN as MEDIA_PLAYER_DOMAIN,
    SERVICE_PLAY_MEDIA,
    MediaPlayerEntityFeature,
    MediaType,
)
from homeassistant.const import ATTR_ENTITY_ID, ATTR_SUPPORTED_FEATURES
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError

from .const import LOGGER


async def async_play(
    hass: HomeAssistant, entity_id: str, url: str, context: Context | None = None
) -> None:
    """Play ``url`` on the player.

    As an announcement where the player supports it, so what it was playing resumes.
    """
    data: dict[str, object] = {
        ATTR_ENTITY_ID: entity_id,
        ATTR_MEDIA_CONTENT_ID: url,
        ATTR_MEDIA_CONTENT_TYPE: MediaType.MUSIC,
    }
    state = hass.states.get(entity_id)
    features = state.attributes.get(ATTR_SUPPORTED_FEATURES, 0) if state else 0
    if features & MediaPlayerEntityFeature.MEDIA_ANNOUNCE:
        data[ATTR_MEDIA_ANNOUNCE] = True
    try:
        await hass.services.async_call(
            MEDIA_PLAYER_DOMAIN,
            SERVICE_PLAY_MEDIA,
            data,
            blocking=True,
            context=context,
        )
    except HomeAssistantError as err:
        LOGGER.warning("Could not play the assistant's voice on %s: %s", entity_id, err)
