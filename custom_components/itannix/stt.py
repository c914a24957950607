"""Speech-to-text entity: the satellite's voice into the assistant's realtime session."""

from __future__ import annotations

from collections.abc import AsyncIterable

from homeassistant.components import stt
from homeassistant.core import HomeAssistant
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import LOGGER
from .entity import ItanniXEntity
from .realtime import ItanniXError
from .runtime import ItanniXConfigEntry, async_note_failure
from .voice import async_listen

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the speech-to-text entity."""
    async_add_entities([ItanniXSpeechToText(entry)])


class ItanniXSpeechToText(stt.SpeechToTextEntity, ItanniXEntity):
    """Streams speech to the assistant, which hears it, answers, and transcribes it.

    The answer itself is picked up by the conversation and text-to-speech entities.
    """

    _attr_translation_key = "speech_to_text"

    def __init__(self, entry: ItanniXConfigEntry) -> None:
        """Initialize the entity."""
        super().__init__(entry, "stt")

    @property
    def supported_languages(self) -> list[str]:
        """The service transcribes any language its model knows."""
        return sorted(LANGUAGES)

    @property
    def supported_formats(self) -> list[stt.AudioFormats]:
        """Raw PCM, as satellites send it."""
        return [stt.AudioFormats.WAV]

    @property
    def supported_codecs(self) -> list[stt.AudioCodecs]:
        """Uncompressed."""
        return [stt.AudioCodecs.PCM]

    @property
    def supported_bit_rates(self) -> list[stt.AudioBitRates]:
        """16-bit samples."""
        return [stt.AudioBitRates.BITRATE_16]

    @property
    def supported_sample_rates(self) -> list[stt.AudioSampleRates]:
        """16 kHz, what every Assist satellite sends."""
        return [stt.AudioSampleRates.SAMPLERATE_16000]

    @property
    def supported_channels(self) -> list[stt.AudioChannels]:
        """Mono."""
        return [stt.AudioChannels.CHANNEL_MONO]

    async def async_process_audio_stream(
        self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> stt.SpeechResult:
        """Let the assistant hear the user; return what it understood."""
        try:
            transcript = await async_listen(
                self.hass, self.entry, metadata.language, stream
            )
        except (ItanniXError, TimeoutError) as err:
            LOGGER.warning("The assistant could not listen: %s", err)
            async_note_failure(self.hass, self.entry, err)
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        # Nothing heard is an empty success: the pipeline reports "no text recognized".
        return stt.SpeechResult(transcript, stt.SpeechResultState.SUCCESS)
