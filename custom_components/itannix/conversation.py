"""The ItanniX assistant as a Home Assistant conversation agent."""

from __future__ import annotations

import asyncio
from typing import Literal

from homeassistant.components import conversation
from homeassistant.const import CONF_PROMPT, MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .chat import DroppedBeforeReplyError, async_run_text_turn
from .const import DOMAIN, LOGGER, TURN_TIMEOUT
from .entity import ItanniXEntity
from .failures import turn_error
from .prompt import TurnPrompt, async_offered_apis, async_turn_prompt, selected_apis
from .realtime import ItanniXError
from .runtime import ItanniXConfigEntry, async_note_failure
from .sessions import SessionManager
from .voice import async_speak_reply, claim_turn

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ItanniXConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the conversation agent."""
    async_add_entities([ItanniXConversationEntity(entry)])


class ItanniXConversationEntity(conversation.ConversationEntity, ItanniXEntity):
    """Type to the ItanniX assistant; the same conversation ID keeps its context."""

    _attr_supports_streaming = True
    _attr_translation_key = "assistant"

    def __init__(self, entry: ItanniXConfigEntry) -> None:
        """Initialize the agent."""
        super().__init__(entry, "conversation")
        if selected_apis(entry):
            self._attr_supported_features = (
                conversation.ConversationEntityFeature.CONTROL
            )

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        """The assistant understands whatever its model does."""
        return MATCH_ALL

    async def _async_handle_message(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> conversation.ConversationResult:
        """Send the message to the conversation's realtime session."""
        # A spoken turn already has its reply under way in the satellite's session.
        voice = claim_turn(self.entry, user_input.text)
        try:
            await self._async_provide_llm_data(user_input, chat_log)
        except conversation.ConverseError as err:
            if voice is not None:
                voice.fail(err)
            return err.as_conversation_result()
        if user_input.extra_system_prompt:
            # The caller's extra prompt holds for the conversation's later turns too,
            # typed or spoken (a spoken turn reads it from the stored log before the
            # user speaks), as core's LLM agents keep it, with or without an LLM API.
            chat_log.extra_system_prompt = user_input.extra_system_prompt
        sessions = self.entry.runtime_data.sessions
        key = voice.live.key if voice is not None else chat_log.conversation_id
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                if voice is not None:
                    await async_speak_reply(
                        self.hass, voice, chat_log, self.entity_id, user_input
                    )
                else:
                    await self._async_typed_turn(sessions, key, chat_log, user_input)
        except asyncio.CancelledError:
            # The satellite moved on (a new wake, a disconnect): stop the reply.
            if voice is not None:
                voice.abandon()
            raise
        except (ItanniXError, TimeoutError) as err:
            LOGGER.warning("ItanniX turn failed: %s", err)
            if voice is not None:
                voice.fail(err)
            await sessions.async_close(key)
            async_note_failure(self.hass, self.entry, err)
            return self._error_result(user_input, chat_log, turn_error(err))
        return conversation.async_get_result_from_chat_log(user_input, chat_log)

    async def _async_provide_llm_data(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> None:
        """Give the chat log the turn's LLM API (its tool calls run through the log)."""
        options = self.entry.options
        if selected_apis(self.entry) or options.get(CONF_PROMPT):
            llm_context = user_input.as_llm_context(DOMAIN)
            await chat_log.async_provide_llm_data(
                llm_context,
                await async_offered_apis(self.hass, self.entry, llm_context),
                options.get(CONF_PROMPT),
                user_input.extra_system_prompt,
            )

    async def _async_typed_prompt(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> TurnPrompt:
        """The typed turn's tools and context (a spoken turn built its own)."""
        extra = user_input.extra_system_prompt or getattr(
            chat_log, "extra_system_prompt", None
        )
        return await async_turn_prompt(
            self.hass,
            self.entry,
            user_input.as_llm_context(DOMAIN),
            extra,
            chat_log.llm_api,
        )

    async def _async_typed_turn(
        self,
        sessions: SessionManager,
        key: str,
        chat_log: conversation.ChatLog,
        user_input: conversation.ConversationInput,
    ) -> None:
        prompt = await self._async_typed_prompt(user_input, chat_log)
        for attempt in range(2):
            live = await sessions.async_get(key, audio=False)
            try:
                async with live.lock:
                    await async_run_text_turn(
                        self.hass,
                        live,
                        chat_log,
                        self.entity_id,
                        user_input.text,
                        self.entry.runtime_data.functions,
                        prompt,
                    )
            except DroppedBeforeReplyError:
                if attempt:
                    raise
                # A blip: ask again on a fresh session, the conversation replayed.
                LOGGER.debug("Asking again on a fresh session (%s)", key)
            else:
                return
            finally:
                sessions.turn_finished(live)

    @staticmethod
    def _error_result(
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
        err: HomeAssistantError,
    ) -> conversation.ConversationResult:
        response = intent.IntentResponse(language=user_input.language)
        response.async_set_error(intent.IntentResponseErrorCode.UNKNOWN, str(err))
        return conversation.ConversationResult(
            response=response, conversation_id=chat_log.conversation_id
        )
