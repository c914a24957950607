"""Constants for the ItanniX Realtime integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "itannix"
# Config entries: 1.2 keys unique IDs and the device on the Client ID (migration.py).
ENTRY_MINOR_VERSION: Final = 2
LOGGER = logging.getLogger(__package__)

DEFAULT_BASE_URL: Final = "https://api.itannix.com"
APP_SOURCE: Final = "home-assistant"
DEFAULT_TITLE: Final = "ItanniX"


def entry_title(client_id: str) -> str:
    """A new entry's title: tells the clients of one installation apart."""
    return f"{DEFAULT_TITLE} ({client_id[:8]})"


# Entry data (user-supplied credentials; the client secret is NOT here, see secret_store).
CONF_BASE_URL: Final = "base_url"
CONF_CLIENT_ID: Final = "client_id"
CONF_WORKSPACE_KEY: Final = "workspace_key"

# Options.
CONF_ASSISTANT_ID: Final = "assistant_id"
CONF_VOICE: Final = "voice"  # ItanniX voice for text that is not a live reply
CONF_MEDIA_PLAYER: Final = "media_player"  # plays spoken replies instead of satellites
CONF_IDLE_TIMEOUT: Final = "idle_timeout"
DEFAULT_IDLE_TIMEOUT: Final = 300  # seconds an unused session stays open for context
MIN_IDLE_TIMEOUT: Final = 10
MAX_IDLE_TIMEOUT: Final = 3600
# Open realtime sessions per entry: each one holds a WebRTC peer and costs the event
# loop a little even when idle; past the cap the longest-idle one is closed first.
CONF_MAX_SESSIONS: Final = "max_sessions"
DEFAULT_MAX_SESSIONS: Final = 10
MIN_MAX_SESSIONS: Final = 1
MAX_MAX_SESSIONS: Final = 50

# The secret is generated here: 32 random bytes, URL-safe (43 characters).
SECRET_BYTES: Final = 32

# How long one typed turn may take before the user gets an error instead of a hang.
TURN_TIMEOUT: Final = 60.0
# How long opening a realtime session (REST + SDP + data channel) may take.
CONNECT_TIMEOUT: Final = 20.0

# Function calls handed to automations (see functions.py).
CONF_FUNCTION_TIMEOUT: Final = "function_timeout"
DEFAULT_FUNCTION_TIMEOUT: Final = 5  # seconds an automation has to answer a call
MIN_FUNCTION_TIMEOUT: Final = 1
# Below the realtime session's own 30 s limit per call, so the answer is always ours.
MAX_FUNCTION_TIMEOUT: Final = 20
EVENT_FUNCTION_CALL: Final = "itannix_function_call"
SERVICE_FUNCTION_CALL_RESPONSE: Final = "function_call_response"
SERVICE_START_CONVERSATION: Final = "start_conversation"
