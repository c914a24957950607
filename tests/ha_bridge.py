"""Lets pytest-homeassistant-custom-component run on a newer Home Assistant than its own.

Loaded before every other pytest plugin (``-p tests.ha_bridge`` in pyproject.toml). A lane
may install a Home Assistant release that no release of the plugin pins yet
(``lane_ha_override`` in scripts/_lanes.sh); the plugin then expects two things of Home
Assistant that have moved. Both are feature-detected, so on a Home Assistant the plugin
was made from this module does nothing:

- Home Assistant 2026.11 aliases ``httpx`` to ``httpx2`` when ``homeassistant`` is
  imported, and refuses to once ``httpx`` is imported. The plugin imports respx (and so
  httpx) before Home Assistant: importing the bare ``homeassistant`` package here first
  makes the alias happen in time. Only its ``__init__`` runs, so the plugin still patches
  Home Assistant's JSON, recorder and time helpers before any of them is imported.
- Home Assistant 2026.11's ``homeassistant.components.logger`` no longer re-exports
  ``_clear_logger_overwrites`` (it lives in ``logger.helpers``), which the plugin imports
  from there. It is put back when that module is first imported, not before: importing
  it here would import Home Assistant ahead of the plugin's patches.
"""

from __future__ import annotations

from collections.abc import Sequence
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

import homeassistant  # noqa: F401  (first: aliases httpx where Home Assistant does)

_LOGGER_MODULE = "homeassistant.components.logger"


class _LoggerReexport(importlib.abc.MetaPathFinder):
    """Puts ``_clear_logger_overwrites`` back on the logger component when it loads."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _LOGGER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_reexport(module: ModuleType) -> None:
            exec_module(module)
            if not hasattr(module, "_clear_logger_overwrites"):
                from homeassistant.components.logger import helpers

                module._clear_logger_overwrites = helpers._clear_logger_overwrites  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_and_reexport  # type: ignore[method-assign]
        return spec


if _LOGGER_MODULE not in sys.modules:
    sys.meta_path.insert(0, _LoggerReexport())
