"""What differs between the Home Assistant releases the integration supports.

Each difference is detected by what Home Assistant offers, never by its version number:
the oldest supported release (2025.12) and the newest must both work.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components import conversation
from homeassistant.components.conversation import chat_log as ha_chat_log
from homeassistant.core import HomeAssistant
from homeassistant.util.hass_dict import HassKey

# Where Home Assistant keeps the conversations' chat logs (the same key in every
# supported release; None if a release stops keeping them there).
_DATA_CHAT_LOGS: HassKey[dict[str, conversation.ChatLog]] | None = getattr(
    ha_chat_log, "DATA_CHAT_LOGS", None
)


def stored_chat_log(
    hass: HomeAssistant, conversation_id: str
) -> conversation.ChatLog | None:
    """The conversation's chat log as the last turn left it, without opening it.

    Since Home Assistant 2026.11 opening a chat log (``async_get_chat_log``) is a turn of
    the conversation: it raises ``ConversationBusyError`` while another turn holds it,
    fires chat log events and adds to the conversation trace. Home Assistant itself reads
    the stored log where it only needs the content (its chat log subscription). Before
    2026.11 the stored log is the one the last turn saved, which is what opening it gave.
    None when there is none (or a release stops keeping logs there).
    """
    if _DATA_CHAT_LOGS is None:
        return None
    chat_logs = hass.data.get(_DATA_CHAT_LOGS)
    return chat_logs.get(conversation_id) if chat_logs else None


# Since 2026.11 Home Assistant itself answers a turn that failed or gave no reply in
# the chat log; those are not things the assistant said.
_ADDS_ITS_OWN_REPLIES = hasattr(conversation.ChatLog, "async_add_error")
_NO_RESPONSE = "(no response)"
_ERROR_PREFIX = "Error: "


def said_by_home_assistant(content: conversation.Content) -> bool:
    """Whether an assistant message is Home Assistant's stand-in for a failed turn."""
    if not _ADDS_ITS_OWN_REPLIES or not isinstance(
        content, conversation.AssistantContent
    ):
        return False
    text = content.content or ""
    return text == _NO_RESPONSE or text.startswith(_ERROR_PREFIX)


def tool_result_data(content: conversation.ToolResultContent) -> Any:
    """The data a tool returned.

    Home Assistant 2026.11 keeps an ``llm.ToolResult`` in ``result`` and deprecates
    ``tool_result`` (removed in 2027.11); 2025.12 has only ``tool_result``.
    """
    result = getattr(content, "result", None)
    if result is not None and hasattr(result, "data"):
        return result.data
    return content.tool_result
