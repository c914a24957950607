"""Logging that stays bounded whatever the network sends."""

from __future__ import annotations

from collections.abc import Hashable
import logging
from typing import Any, Final

# Kinds remembered per logger; past this, everything is logged at debug.
_MAX_KINDS: Final = 256


class OnceLogger:
    """Warn about each kind of problem once; repeats go to the debug log.

    A peer that sends thousands of bad messages, or a service that hands out the same
    unusable ICE server with every session, must not flood Home Assistant's log.
    """

    def __init__(self, logger: logging.Logger) -> None:
        """Wrap ``logger``; nothing has been warned about yet."""
        self._logger = logger
        self._seen: set[Hashable] = set()

    def warning(
        self, kind: Hashable, message: str, *args: Any, exc_info: bool = False
    ) -> None:
        """Log ``message`` as a warning the first time ``kind`` happens."""
        if kind in self._seen or len(self._seen) >= _MAX_KINDS:
            self._logger.debug(message, *args, exc_info=exc_info)
            return
        self._seen.add(kind)
        self._logger.warning(message, *args, exc_info=exc_info)

    def forget(self, kind: Hashable) -> None:
        """Warn again the next time ``kind`` happens (it was resolved meanwhile)."""
        self._seen.discard(kind)
