"""Speech-to-text entity: the satellite's voice into the assistant's realtime session."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from typing import Any

from homeassistant.components import stt
from homeassistant.core import HomeAssistant
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import LOGGER
from .entity import ItanniXEntity
from .realtime import ItanniXError
from .runtime import ItanniXConfigEntry, async_note_failure
from .voice import Heard, async_listen_with_progress

# Partial results exist from Home Assistant 2026.11.
_PartialSpeechResult: Any = getattr(stt, "PartialSpeechResult", None)

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
        async with aclosing(self._async_results(metadata, stream)) as results:
            async for result in results:
                if isinstance(result, stt.SpeechResult):
                    return result
        raise RuntimeError("listening ended without a result")  # pragma: no cover

    if _PartialSpeechResult is not None:
        # Home Assistant 2026.11+: what the service transcribed so far, as it grows.

        async def async_process_audio_stream_with_progress(
            self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
        ) -> AsyncGenerator[Any]:
            """Yield the transcript so far, then what the assistant understood."""
            async with aclosing(self._async_results(metadata, stream)) as results:
                async for result in results:
                    yield result

    async def _async_results(
        self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> AsyncGenerator[Any]:
        """Partial results (where Home Assistant has them), then the final one."""
        try:
            async with aclosing(
                async_listen_with_progress(
                    self.hass, self.entry, metadata.language, stream
                )
            ) as hearing:
                async for heard in hearing:
                    if isinstance(heard, Heard):
                        # Nothing heard is an empty success: the pipeline reports
                        # "no text recognized".
                        yield stt.SpeechResult(
                            heard.text or "", stt.SpeechResultState.SUCCESS
                        )
                        return
                    if _PartialSpeechResult is not None:
                        yield _PartialSpeechResult(text=heard)
        except (ItanniXError, TimeoutError) as err:
            LOGGER.warning("The assistant could not listen: %s", err)
            async_note_failure(self.hass, self.entry, err)
            yield stt.SpeechResult(None, stt.SpeechResultState.ERROR)
