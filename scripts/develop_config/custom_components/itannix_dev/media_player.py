"""A development media player that "plays" by downloading what it is given.

Never part of the shipped integration: it lives in the development configuration only
(`media_player: - platform: itannix_dev`). It has no speaker. Playing a URL (a relayed
live reply, a TTS URL, a media source) downloads it from Home Assistant, bounded in
time and size, logs how many bytes came, and keeps the last playback's figures in its
attributes (`last_media`: the URL's path, `last_bytes`, `plays`), so a developer and
scripts/develop-check see that it was played. Volume and mute are remembered, so the
assistant's device functions (`set_device_volume`, `quiet_device`, ...) show on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from homeassistant.components import media_source
from homeassistant.components.media_player import (
    MediaPlayerEntity,
    MediaPlayerEntityFeature,
    MediaPlayerState,
    MediaType,
    async_process_play_media_url,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.typing import ConfigType, DiscoveryInfoType

_LOGGER = logging.getLogger(__name__)

# A reply is seconds of audio; anything longer than this is cut off.
FETCH_TIMEOUT = 120
MAX_BYTES = 64 * 1024 * 1024


async def async_setup_platform(
    hass: HomeAssistant,
    config: ConfigType,
    async_add_entities: AddEntitiesCallback,
    discovery_info: DiscoveryInfoType | None = None,
) -> None:
    """Add the one development speaker."""
    async_add_entities([DevSpeaker()])


class DevSpeaker(MediaPlayerEntity):
    """Downloads what it plays and says how much came."""

    _attr_name = "Dev speaker"
    _attr_unique_id = "itannix_dev_speaker"
    _attr_media_content_type = MediaType.MUSIC
    _attr_supported_features = (
        MediaPlayerEntityFeature.PLAY_MEDIA
        | MediaPlayerEntityFeature.MEDIA_ANNOUNCE
        | MediaPlayerEntityFeature.STOP
        | MediaPlayerEntityFeature.VOLUME_SET
        | MediaPlayerEntityFeature.VOLUME_STEP
        | MediaPlayerEntityFeature.VOLUME_MUTE
        | MediaPlayerEntityFeature.BROWSE_MEDIA
    )

    def __init__(self) -> None:
        """Start idle, at half volume."""
        self._attr_state = MediaPlayerState.IDLE
        self._attr_volume_level = 0.5
        self._attr_is_volume_muted = False
        self._plays = 0
        self._last_media: str | None = None
        self._last_bytes = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """What the last playback fetched."""
        return {
            "plays": self._plays,
            "last_media": self._last_media,
            "last_bytes": self._last_bytes,
        }

    async def async_play_media(
        self, media_type: MediaType | str, media_id: str, **kwargs: Any
    ) -> None:
        """Download the media in the background, as a player streams it."""
        if media_source.is_media_source_id(media_id):
            resolved = await media_source.async_resolve_media(
                self.hass, media_id, self.entity_id
            )
            media_id = resolved.url
        url = async_process_play_media_url(self.hass, media_id)
        if url.startswith("/"):
            raise ValueError(f"cannot fetch a relative URL: {url}")
        await self._async_cancel()
        self._attr_state = MediaPlayerState.PLAYING
        self._attr_media_content_id = url.split("?", 1)[0]
        self.async_write_ha_state()
        self._task = self.hass.async_create_background_task(
            self._async_fetch(url), f"{self.entity_id} playing"
        )

    async def _async_fetch(self, url: str) -> None:
        path = url.split("?", 1)[0]
        received = 0
        try:
            session = async_get_clientsession(self.hass)
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            async with session.get(url, timeout=timeout) as resp:
                resp.raise_for_status()
                async for chunk in resp.content.iter_chunked(65536):
                    received += len(chunk)
                    if received >= MAX_BYTES:
                        break
            _LOGGER.info("Dev speaker played %s: %d bytes received", path, received)
        except (aiohttp.ClientError, TimeoutError) as err:
            _LOGGER.warning(
                "Dev speaker could not play %s (%d bytes received): %s",
                path,
                received,
                err,
            )
        finally:
            self._plays += 1
            self._last_media = path
            self._last_bytes = received
            self._attr_state = MediaPlayerState.IDLE
            self._task = None
            self.async_write_ha_state()

    async def _async_cancel(self) -> None:
        if (task := self._task) is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def async_media_stop(self) -> None:
        """Stop the download."""
        await self._async_cancel()
        self._attr_state = MediaPlayerState.IDLE
        self.async_write_ha_state()

    async def async_set_volume_level(self, volume: float) -> None:
        """Remember the volume."""
        self._attr_volume_level = volume
        self.async_write_ha_state()

    async def async_mute_volume(self, mute: bool) -> None:
        """Remember the mute."""
        self._attr_is_volume_muted = mute
        self.async_write_ha_state()

    async def async_browse_media(
        self,
        media_content_type: MediaType | str | None = None,
        media_content_id: str | None = None,
    ) -> Any:
        """Browse Home Assistant's media sources (text-to-speech among them)."""
        return await media_source.async_browse_media(
            self.hass,
            media_content_id,
            content_filter=lambda item: item.media_content_type.startswith("audio/"),
        )

    async def async_will_remove_from_hass(self) -> None:
        """Leave no download running."""
        await self._async_cancel()
