"""Playing the assistant's voice on a media player chosen in the options."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from homeassistant.components import tts
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
from homeassistant.core import Context, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from .audio_format import wav_header
from .audio_relay import async_get_relay
from .const import LOGGER

# Home Assistant 2026.11 plays audio that no TTS engine made from its own TTS proxy
# (``tts.async_create_audio_stream``), converted to what media players take. Before, the
# integration's relay (``audio_relay``) serves it.
_create_audio_stream: Any = getattr(tts, "async_create_audio_stream", None)
_PcmFormat: Any = getattr(tts, "PcmFormat", None)
HOME_ASSISTANT_SERVES_LIVE_AUDIO: Final = (
    _create_audio_stream is not None and _PcmFormat is not None
)


@callback
def async_live_media_id(
    hass: HomeAssistant,
    pcm: AsyncGenerator[bytes],
    sample_rate: int,
    on_unused: Callable[[], None],
) -> str:
    """What a media player plays to hear ``pcm`` (16-bit mono) as it arrives.

    On Home Assistant 2026.11 a TTS media source ID: Home Assistant reads the stream at
    once and serves it, as MP3, from its TTS proxy (``on_unused`` is not needed: the
    stream is always read). Before, a signed single-use URL of the relay; ``on_unused``
    runs when no player fetched it in time.
    """
    if HOME_ASSISTANT_SERVES_LIVE_AUDIO:
        stream = _create_audio_stream(hass)
        stream.async_set_audio_stream(_PcmFormat(sample_rate, 2, 1), pcm)
        media_id: str = stream.media_source_id
        return media_id

    async def wav() -> AsyncGenerator[bytes]:
        yield wav_header(sample_rate, 1)
        async for chunk in pcm:
            yield chunk

    return async_get_relay(hass).async_register(wav, "audio/wav", on_unused)


async def async_play(
    hass: HomeAssistant,
    entity_id: str,
    media_id: str,
    context: Context | None = None,
) -> None:
    """Play ``media_id`` (a URL or a media source ID) on the player.

    As an announcement where the player supports it, so what it was playing resumes.
    """
    data: dict[str, object] = {
        ATTR_ENTITY_ID: entity_id,
        ATTR_MEDIA_CONTENT_ID: media_id,
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
