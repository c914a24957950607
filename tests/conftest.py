"""Shared fixtures: the ItanniX emulator over loopback, and clean-up the harness checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.emulator import Emulator
from tests.emulator.loopback import restrict_ice_to_loopback

WORKSPACE_KEY = "wk-test"

# ICE host candidates stay on loopback for every test in this process: tests never send
# traffic to the machine's other interfaces.
restrict_ice_to_loopback()


@pytest.fixture
async def emulator(socket_enabled: None, tmp_path: Path) -> AsyncIterator[Emulator]:
    """A started emulator that requires the workspace key ``wk-test``."""
    emu = Emulator(
        workspace_key=WORKSPACE_KEY,
        state_file=tmp_path / "enrollments.json",
        host="127.0.0.1",
        port=0,
    )
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
def emulator_url(emulator: Emulator) -> str:
    """Base URL of the running emulator."""
    return emulator.url
