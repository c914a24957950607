"""A test Assist satellite: a real AssistSatelliteEntity that records pipeline events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
import inspect
from typing import Any, ClassVar
from unittest.mock import Mock

from homeassistant.components import assist_satellite
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.components.assist_satellite import (
    AssistSatelliteAnnouncement,
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
    AssistSatelliteEntityFeature,
)
from homeassistant.components.media_player import (
    MediaPlayerEntity,
    MediaPlayerEntityFeature,
    MediaPlayerState,
)
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

TEST_DOMAIN = "test_satellite"
CHUNK = 320  # 10 ms of 16 kHz mono s16, as satellites send it

# The harness loads the test integration as a core one, and a core integration's
# async_setup_entry answers True up to Home Assistant 2026.10 but None from 2026.11 (where
# a boolean raises). It answers as the core assist_satellite integration's own does.
_SETUP_ANSWER: bool | None = (
    None
    if inspect.signature(assist_satellite.async_setup_entry).return_annotation is None
    else True
)


class VoiceSatellite(AssistSatelliteEntity):
    """A voice satellite whose microphone is a byte string."""

    _attr_supported_features = (
        AssistSatelliteEntityFeature.ANNOUNCE
        | AssistSatelliteEntityFeature.START_CONVERSATION
    )
    # Ask for what ESPHome satellites play natively.
    _attr_tts_options: ClassVar[dict[str, Any]] = {
        "preferred_format": "wav",
        "preferred_sample_rate": 16000,
        "preferred_sample_channels": 1,
        "preferred_sample_bytes": 2,
    }

    def __init__(self, name: str) -> None:
        """Initialize with a name (also its unique ID)."""
        self._attr_name = name
        self._attr_unique_id = name
        self.events: list[PipelineEvent] = []
        self.announcements: list[AssistSatelliteAnnouncement] = []
        # What the user says after the satellite starts a conversation.
        self.answer: bytes = b""

    async def async_announce(self, announcement: AssistSatelliteAnnouncement) -> None:
        """Record what was announced."""
        self.announcements.append(announcement)

    async def async_start_conversation(
        self, start_announcement: AssistSatelliteAnnouncement
    ) -> None:
        """Play the opening, then listen to the user's answer."""
        self.announcements.append(start_announcement)
        await self.talk(self.answer)

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Record every pipeline event."""
        self.events.append(event)

    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        """No wake words: the tests start at speech-to-text."""
        return AssistSatelliteConfiguration(
            available_wake_words=[], active_wake_words=[], max_active_wake_words=0
        )

    async def async_set_configuration(
        self, config: AssistSatelliteConfiguration
    ) -> None:
        """Nothing to configure."""

    def event_data(self, kind: PipelineEventType) -> dict[str, Any]:
        """Data of the last event of a kind in the last run."""
        run = self.events[_last_run_start(self.events) :]
        matching = [event for event in run if event.type is kind]
        assert matching, f"no {kind} in {[event.type for event in run]}"
        return dict(matching[-1].data or {})

    def heard(self) -> str:
        """What speech-to-text made of the last run's audio."""
        return str(self.event_data(PipelineEventType.STT_END)["stt_output"]["text"])

    def reply(self) -> str:
        """What the agent answered in the last run."""
        output = self.event_data(PipelineEventType.INTENT_END)["intent_output"]
        return str(output["response"]["speech"]["plain"]["speech"])

    async def talk(self, pcm: bytes) -> None:
        """Say ``pcm`` to the satellite and run its pipeline to the end."""
        await self.async_accept_pipeline_from_satellite(microphone(pcm))


class RecordingPlayer(MediaPlayerEntity):
    """A speaker that remembers what it was asked to play."""

    _attr_supported_features = (
        MediaPlayerEntityFeature.PLAY_MEDIA | MediaPlayerEntityFeature.MEDIA_ANNOUNCE
    )
    _attr_state = MediaPlayerState.IDLE

    def __init__(self, name: str) -> None:
        """Initialize with a name (also its unique ID)."""
        self._attr_name = name
        self._attr_unique_id = name
        self.played: list[tuple[str, dict[str, Any]]] = []

    async def async_play_media(
        self, media_type: str, media_id: str, **kwargs: Any
    ) -> None:
        """Record the media and its options (announce...)."""
        self.played.append((media_id, kwargs))


def _last_run_start(events: list[PipelineEvent]) -> int:
    starts = [i for i, e in enumerate(events) if e.type is PipelineEventType.RUN_START]
    return starts[-1] if starts else 0


async def microphone(pcm: bytes) -> AsyncIterator[bytes]:
    """Audio in satellite-sized chunks."""
    for start in range(0, len(pcm), CHUNK):
        yield pcm[start : start + CHUNK]


class _Flow(ConfigFlow):
    """Config flow of the test domain (never used; entries are made directly)."""


async def async_setup_satellites[S: VoiceSatellite](
    hass: HomeAssistant,
    *names: str,
    kind: type[S] = VoiceSatellite,
    players: Sequence[RecordingPlayer] = (),
) -> list[S]:
    """Set up a test integration: a satellite entity (of ``kind``) per name.

    The given media players are added too.
    """
    satellites = [kind(name) for name in names]
    platforms: dict[str, list[Any]] = {
        "assist_satellite": list(satellites),
        "media_player": list(players),
    }

    async def setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool | None:
        await hass.config_entries.async_forward_entry_setups(entry, list(platforms))
        return _SETUP_ANSWER

    mock_integration(hass, MockModule(TEST_DOMAIN, async_setup_entry=setup_entry))
    mock_platform(hass, f"{TEST_DOMAIN}.config_flow", Mock())
    for platform, entities in platforms.items():

        async def setup_platform(
            hass: HomeAssistant,
            entry: ConfigEntry,
            async_add_entities: AddConfigEntryEntitiesCallback,
            entities: list[Any] = entities,
        ) -> None:
            async_add_entities(entities)

        mock_platform(
            hass,
            f"{TEST_DOMAIN}.{platform}",
            MockPlatform(async_setup_entry=setup_platform),
        )
    entry = MockConfigEntry(domain=TEST_DOMAIN)
    entry.add_to_hass(hass)
    with mock_config_flow(TEST_DOMAIN, _Flow):
        assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return satellites
