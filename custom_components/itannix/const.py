"""Constants for the ItanniX Realtime integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "itannix"
LOGGER = logging.getLogger(__package__)

DEFAULT_BASE_URL: Final = "https://api.itannix.com"
APP_SOURCE: Final = "home-assistant"
DEFAULT_TITLE: Final = "ItanniX"

# Entry data (user-supplied credentials; the client secret is NOT here, see secret_store).
CONF_BASE_URL: Final = "base_url"
CONF_CLIENT_ID: Final = "client_id"
CONF_WORKSPACE_KEY: Final = "workspace_key"

# Options.
CONF_ASSISTANT_ID: Final = "assistant_id"
CONF_IDLE_TIMEOUT: Final = "idle_timeout"
DEFAULT_IDLE_TIMEOUT: Final = 300  # seconds an unused session stays open for context
MIN_IDLE_TIMEOUT: Final = 10
MAX_IDLE_TIMEOUT: Final = 3600

# The secret is generated here: 32 random bytes, URL-safe (43 characters).
SECRET_BYTES: Final = 32

# How long one typed turn may take before the user gets an error instead of a hang.
TURN_TIMEOUT: Final = 60.0
# How long opening a realtime session (REST + SDP + data channel) may take.
CONNECT_TIMEOUT: Final = 20.0
