"""Text-to-speech entity: the assistant's own voice.

For a spoken turn's reply it plays what the assistant said in that turn, as it arrives.
Any other text (announcements, ``tts.speak``, another agent's reply) is synthesized by the
ItanniX text-to-speech API in the configured voice, so the assistant sounds the same
everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.components import tts
from homeassistant.components.tts.entity import TTSAudioRequest, TTSAudioResponse
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .audio_relay import async_get_relay
from .const import CONF_MEDIA_PLAYER, CONF_VOICE, DOMAIN, LOGGER
from .entity import ItanniXEntity
from .playback import async_play
from .realtime import ItanniXError, Voice
from .runtime import ItanniXConfigEntry
from .voice import SAMPLE_RATE, VoiceTurn, current_turn, wav_file

PARALLEL_UPDATES = 0

# What the REST API's audio URL serves, told apart by its first bytes.
_SIGNATURES = ((b"RIFF", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3"))


def audio_extension(data: bytes) -> str:
    """The file type of synthesized audio (MP3 frames have no fixed magic)."""
    for magic, extension in _SIGNATURES:
        if data.startswith(magic):
            return extension
    return "mp3"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the text-to-speech entity."""
    async_add_entities([ItanniXTextToSpeech(entry)])


class ItanniXTextToSpeech(tts.TextToSpeechEntity, ItanniXEntity):
    """The assistant's voice."""

    _attr_translation_key = "text_to_speech"

    def __init__(self, entry: ItanniXConfigEntry) -> None:
        """Initialize the entity."""
        super().__init__(entry, "tts")
        self._attr_supported_options = [tts.ATTR_VOICE]
        self._voices: list[Voice] = []

    @property
    def supported_languages(self) -> list[str]:
        """The voices speak whatever language the text is in."""
        return sorted(LANGUAGES)

    @property
    def default_language(self) -> str:
        """Home Assistant's own language."""
        return self.hass.config.language

    @property
    def default_options(self) -> dict[str, Any] | None:
        """The voice chosen in the options."""
        if voice := self.entry.options.get(CONF_VOICE):
            return {tts.ATTR_VOICE: voice}
        return None

    async def async_added_to_hass(self) -> None:
        """Learn the workspace's voices (for the voice pickers)."""
        await super().async_added_to_hass()
        try:
            self._voices = await self.entry.runtime_data.client.list_voices()
        except ItanniXError as err:
            LOGGER.warning("Could not list ItanniX voices: %s", err)

    def async_get_supported_voices(self, language: str) -> list[tts.Voice] | None:
        """The workspace's voices."""
        return [tts.Voice(voice.voice_id, voice.name) for voice in self._voices]

    async def async_stream_tts_audio(
        self, request: TTSAudioRequest
    ) -> TTSAudioResponse:
        """Play the current spoken turn's own voice; synthesize anything else."""
        voice = current_turn()
        # The spoken turn decides: its reply's own voice, or the text synthesized
        # (another agent's reply, or the error of a turn that failed).
        if (
            voice is not None
            and voice.entry is self.entry
            and (audio := voice.tts_stream()) is not None
        ):
            if player := self.entry.options.get(CONF_MEDIA_PLAYER):
                return self._play_elsewhere(voice, audio, player)
            return TTSAudioResponse("wav", audio)
        message = "".join([chunk async for chunk in request.message_gen])
        extension, data = await self.async_get_tts_audio(
            message, request.language, request.options
        )
        if data is None:
            raise HomeAssistantError(
                translation_domain=DOMAIN, translation_key="tts_failed"
            )

        async def data_gen() -> Any:
            yield data

        return TTSAudioResponse(extension or "mp3", data_gen())

    def _play_elsewhere(
        self, voice: VoiceTurn, audio: AsyncGenerator[bytes], player: str
    ) -> TTSAudioResponse:
        """Send the reply's voice to the chosen media player.

        The satellite gets a moment of silence instead of a second copy.
        """
        url = async_get_relay(self.hass).async_register(
            lambda: audio, "audio/wav", voice.finish
        )
        self.entry.async_create_background_task(
            self.hass, async_play(self.hass, player, url), f"{DOMAIN} play reply"
        )

        async def silence() -> AsyncGenerator[bytes]:
            yield wav_file(bytes(SAMPLE_RATE // 10 * 2))

        return TTSAudioResponse("wav", silence())

    async def async_get_tts_audio(
        self, message: str, language: str, options: dict[str, Any]
    ) -> tts.TtsAudioType:
        """Synthesize text with the ItanniX text-to-speech API."""
        client = self.entry.runtime_data.client
        voice_id = options.get(tts.ATTR_VOICE) or self.entry.options.get(CONF_VOICE)
        try:
            if not voice_id:
                if not self._voices:
                    self._voices = await client.list_voices()
                if not self._voices:
                    raise HomeAssistantError(
                        translation_domain=DOMAIN, translation_key="no_voice"
                    )
                voice_id = self._voices[0].voice_id
            speech = await client.synthesize(voice_id, message)
            data = await client.fetch_audio(speech.audio_url)
        except ItanniXError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="tts_failed_reason",
                translation_placeholders={"error": err.message},
            ) from err
        return audio_extension(data), data
