"""Development tooling for scripts/develop: keep WebRTC ICE on loopback.

Never part of the shipped integration: it lives in the development configuration only.
The local emulator offers ICE host candidates on 127.0.0.1 alone; without this patch
Home Assistant's aiortc would also gather (and probe) every other interface of the
machine. Same few lines as tests/emulator/loopback.py, copied so that Home Assistant
does not need the tests on its import path.
"""

from __future__ import annotations

import aioice.ice
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

DOMAIN = "itannix_dev"
CONFIG_SCHEMA = cv.empty_config_schema(DOMAIN)

_LOOPBACK = "127.0.0.1"


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Offer only 127.0.0.1, so no packet reaches the machine's other interfaces."""
    return [_LOOPBACK] if use_ipv4 else []


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Patch aioice before any ItanniX session gathers candidates."""
    aioice.ice.get_host_addresses = _loopback_host_addresses
    return True
