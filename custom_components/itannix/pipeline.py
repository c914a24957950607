"""An Assist pipeline wired to the assistant, so picking it on a satellite is one click."""

from __future__ import annotations

from homeassistant.components import assist_pipeline
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant

from .const import LOGGER
from .entity import async_entity_id
from .runtime import ItanniXConfigEntry

PIPELINE_NAME = "ItanniX"


async def async_ensure_pipeline(hass: HomeAssistant, entry: ItanniXConfigEntry) -> None:
    """Create the "ItanniX" pipeline unless one already uses this assistant."""
    agent = async_entity_id(hass, entry, Platform.CONVERSATION, "conversation")
    stt_id = async_entity_id(hass, entry, Platform.STT, "stt")
    tts_id = async_entity_id(hass, entry, Platform.TTS, "tts")
    if agent is None or stt_id is None or tts_id is None:
        return
    if any(
        pipeline.conversation_engine == agent
        for pipeline in assist_pipeline.async_get_pipelines(hass)
    ):
        return
    pipeline = await assist_pipeline.async_create_default_pipeline(
        hass, stt_engine_id=stt_id, tts_engine_id=tts_id, pipeline_name=PIPELINE_NAME
    )
    if pipeline is None:
        LOGGER.warning("Could not create the %s Assist pipeline", PIPELINE_NAME)
        return
    # Home Assistant pins the engine's first voice, which a pipeline run prefers to
    # the entity's default: left unset, the options' voice applies. A voice picked
    # later in the pipeline editor is that pipeline's choice, and wins.
    await assist_pipeline.async_update_pipeline(
        hass, pipeline, conversation_engine=agent, tts_voice=None
    )
