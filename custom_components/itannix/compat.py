"""What differs between the Home Assistant releases the integration supports.

Each difference is detected by what Home Assistant offers, never by its version number:
the oldest supported release (2025.12) and the newest must both work.
"""

from __future__ import annotations

from homeassistant.components import conversation
from homeassistant.components.conversation import chat_log as ha_chat_log
from homeassistant.core import HomeAssistant
from homeassistant.helpers import chat_session
from homeassistant.util.hass_dict import HassKey

# Where Home Assistant keeps the conversations' chat logs (the same key in every
# supported release; None if a release stops keeping them there).
_DATA_CHAT_LOGS: HassKey[dict[str, conversation.ChatLog]] | None = getattr(
    ha_chat_log, "DATA_CHAT_LOGS", None
)


def chat_log_history(
    hass: HomeAssistant, session: chat_session.ChatSession
) -> list[conversation.Content]:
    """The conversation so far, read without opening its chat log.

    Since Home Assistant 2026.11 opening a chat log (``async_get_chat_log``) is a turn of
    the conversation: it raises ``ConversationBusyError`` while another turn holds it,
    fires chat log events and adds to the conversation trace. Home Assistant itself reads
    the stored log where it only needs the content (its chat log subscription). Before
    2026.11 the stored log is the one the last turn saved, which is what opening it gave.
    """
    if _DATA_CHAT_LOGS is None:
        with conversation.async_get_chat_log(hass, session) as chat_log:
            return list(chat_log.content)
    chat_logs = hass.data.get(_DATA_CHAT_LOGS)
    stored = chat_logs.get(session.conversation_id) if chat_logs else None
    return list(stored.content) if stored is not None else []
