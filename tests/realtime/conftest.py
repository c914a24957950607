"""Fixtures for the realtime library's tests: clients of the emulator, real speech."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
import pytest

from custom_components.itannix.realtime import Credentials, ItanniXClient
from tests.audio import speak
from tests.conftest import WORKSPACE_KEY

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.emulator import Emulator

CLIENT_ID = "0b6f7c1e-2d4a-4e8b-9c3f-5a1d2e3f4b6c"
CLIENT_SECRET = "c0ffee" * 8  # 48 characters, like a device-generated hex secret
SPOKEN_TEXT = "Turn on the kitchen light."


@pytest.fixture(autouse=True)
async def _shutdown_executor() -> AsyncIterator[None]:
    """Join aiortc's codec threads (the loop's default executor) after each test.

    Autouse, so it tears down after the emulator and the test's own peers.
    """
    yield
    await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
def credentials() -> Credentials:
    """Provide credentials the emulator accepts (enrolled on first use)."""
    return Credentials(CLIENT_ID, CLIENT_SECRET, workspace_key=WORKSPACE_KEY)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Provide an aiohttp session, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(
    http: aiohttp.ClientSession, emulator: Emulator, credentials: Credentials
) -> ItanniXClient:
    """Provide a client of the running emulator."""
    return ItanniXClient(http, emulator.url, credentials, timeout=5.0)


@pytest.fixture(scope="session")
def speech_pcm16k(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Provide real speech (espeak-ng) as 16 kHz mono s16 PCM, made at test time."""
    return speak(SPOKEN_TEXT, tmp_path_factory.mktemp("speech"))
