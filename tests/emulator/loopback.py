"""Keep aiortc's ICE host candidates on loopback (tests and the emulator only)."""

from __future__ import annotations

from typing import Any

import aioice.ice

_LOOPBACK = "127.0.0.1"


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Offer only 127.0.0.1, so no packet reaches the machine's other interfaces."""
    return [_LOOPBACK] if use_ipv4 else []


_loopback_host_addresses.itannix_loopback = True  # type: ignore[attr-defined]


def restrict_ice_to_loopback() -> None:
    """Patch aioice so host candidates are loopback only (idempotent).

    The production library never calls this; it exists for tests and the emulator.
    """
    current: Any = aioice.ice.get_host_addresses
    if getattr(current, "itannix_loopback", False):
        return
    aioice.ice.get_host_addresses = _loopback_host_addresses
