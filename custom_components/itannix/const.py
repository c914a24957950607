"""Constants for the ItanniX Realtime integration."""

from typing import Final

DOMAIN: Final = "itannix"
DEFAULT_BASE_URL: Final = "https://api.itannix.com"
APP_SOURCE: Final = "home-assistant"
