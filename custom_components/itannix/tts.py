"""Text-to-speech entity: the assistant's own voice.

For a spoken turn's reply it plays what the assistant said in that turn, as it arrives.
Any other text (announcements, ``tts.speak``, another agent's reply) is synthesized by the
ItanniX text-to-speech API in the configured voice, so the assistant sounds the same
everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import av
from homeassistant.components import tts
from homeassistant.components.tts.entity import TTSAudioRequest, TTSAudioResponse
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .audio_format import (
    FLAC,
    WAV,
    AudioFormat,
    encode_wav_stream,
    transcode,
    wav_header,
)
from .const import CONF_VOICE, DOMAIN, LOGGER
from .entity import ItanniXEntity
from .realtime import ItanniXError, Voice
from .runtime import ItanniXConfigEntry, async_note_failure
from .voice import SAMPLE_RATE, current_turn

PARALLEL_UPDATES = 0

# What the REST API's audio URL serves, told apart by its first bytes.
_SIGNATURES = ((b"RIFF", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3"))

# Home Assistant 2026.11 (the release that added PcmFormat) leaves the preferred format
# options an entity lists in supported_options to that entity: no ffmpeg, which holds a
# live stream back until it read ahead. Before, any sample format asked for made it
# convert whatever the entity produced, so there the entity lists none of them (and
# hands it what its ffmpeg starts on soonest: requested_format).
ENTITY_MAKES_FORMAT: Final = hasattr(tts, "PcmFormat")
_SAMPLE_OPTIONS: Final = (
    tts.ATTR_PREFERRED_SAMPLE_RATE,
    tts.ATTR_PREFERRED_SAMPLE_CHANNELS,
    tts.ATTR_PREFERRED_SAMPLE_BYTES,
)
_FORMAT_OPTIONS: Final = (tts.ATTR_PREFERRED_FORMAT, *_SAMPLE_OPTIONS)
_NATIVE: Final = AudioFormat(WAV, SAMPLE_RATE)


def audio_extension(data: bytes) -> str:
    """The file type of synthesized audio (MP3 frames have no fixed magic)."""
    for magic, extension in _SIGNATURES:
        if data.startswith(magic):
            return extension
    return "mp3"


def requested_format(options: Mapping[str, Any]) -> AudioFormat | None:
    """What the entity hands Home Assistant for these options (None: 16 kHz WAV).

    A format it cannot encode (another container, sample width or channel count) is
    handed over in a container other than the one asked for, so that Home Assistant
    converts it with every option.
    """
    extension = options.get(tts.ATTR_PREFERRED_FORMAT)
    if not ENTITY_MAKES_FORMAT:
        # Home Assistant converts unless WAV and nothing more was asked for. Its ffmpeg
        # holds a live WAV stream back for seconds (as measured here, to its end); a
        # FLAC one it converts from a few hundred milliseconds in.
        if extension == WAV and not any(options.get(o) for o in _SAMPLE_OPTIONS):
            return None
        return AudioFormat(FLAC, SAMPLE_RATE)
    if not extension:
        return None
    asked = AudioFormat(
        str(extension),
        int(options.get(tts.ATTR_PREFERRED_SAMPLE_RATE) or SAMPLE_RATE),
        int(options.get(tts.ATTR_PREFERRED_SAMPLE_CHANNELS) or 1),
    )
    if asked.producible and int(options.get(tts.ATTR_PREFERRED_SAMPLE_BYTES) or 2) == 2:
        return asked
    return AudioFormat(FLAC if asked.extension == WAV else WAV, SAMPLE_RATE)


def _in_format(
    wav: AsyncGenerator[bytes], target: AudioFormat | None
) -> TTSAudioResponse:
    """Our 16 kHz WAV stream, encoded to ``target`` as it comes."""
    if target is None or target == _NATIVE:
        return TTSAudioResponse(WAV, wav)
    return TTSAudioResponse(target.extension, encode_wav_stream(wav, target))


async def _silence() -> AsyncGenerator[bytes]:
    """A tenth of a second of 16 kHz WAV silence."""
    pcm = bytes(SAMPLE_RATE // 10 * 2)
    yield wav_header(SAMPLE_RATE, 1, len(pcm)) + pcm


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
        self._attr_supported_options = [
            tts.ATTR_VOICE,
            *(_FORMAT_OPTIONS if ENTITY_MAKES_FORMAT else ()),
        ]
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
        target = requested_format(request.options)
        # The spoken turn decides: its reply's own voice, or the text synthesized
        # (another agent's reply, or the error of a turn that failed).
        if voice is not None and voice.entry is self.entry:
            # With a media player chosen, the voice plays there; the satellite gets a
            # moment of silence instead of a second copy.
            if voice.play_on_player():
                return _in_format(_silence(), target)
            if (audio := voice.tts_stream()) is not None:
                return _in_format(audio, target)
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
            # Credentials the service refused start reauthentication, as in a turn.
            async_note_failure(self.hass, self.entry, err)
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="tts_failed_reason",
                translation_placeholders={"error": err.message},
            ) from err
        return await self._async_conform(audio_extension(data), data, options)

    async def _async_conform(
        self, extension: str, data: bytes, options: dict[str, Any]
    ) -> tuple[str, bytes]:
        """Synthesized audio in the sample format asked for, when it is our part.

        Home Assistant converts a container other than the one asked for itself; on
        2026.11 one that is already the asked container it passes on as it is, so its
        sample format is made here. (Before, it converts whole files itself.)
        """
        if (
            not ENTITY_MAKES_FORMAT
            or extension != options.get(tts.ATTR_PREFERRED_FORMAT)
            or not any(options.get(option) for option in _SAMPLE_OPTIONS)
            or (target := requested_format(options)) is None
        ):
            return extension, data
        try:
            data = await self.hass.async_add_executor_job(transcode, data, target)
        except (av.FFmpegError, ValueError, IndexError) as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="tts_failed_reason",
                translation_placeholders={"error": str(err)},
            ) from err
        return target.extension, data
