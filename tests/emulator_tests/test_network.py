"""The emulator's network profile: HTTP answers pay the round trip, media the loss too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import re
import signal
import sys
import time

import aiohttp
import pytest

from custom_components.itannix.realtime import RealtimeConnection
from tests.audio import speak
from tests.conftest import WORKSPACE_KEY
from tests.emulator import Emulator, Turn
from tests.network import NetworkProfile

from .test_emulator_http import auth_headers, create_session
from .wire import make_client, say

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _timed_session_request(
    http: aiohttp.ClientSession, url: str, key: str
) -> float:
    start = time.perf_counter()
    resp = await create_session(http, url, auth_headers(workspace_key=key))
    assert resp.status == 200
    return time.perf_counter() - start


async def test_network_flag_makes_every_http_answer_pay_the_round_trip(
    socket_enabled: None, http: aiohttp.ClientSession
) -> None:
    """``--network rtt=...``: a session request takes at least one round trip."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulator",
        "--port",
        "0",
        "--workspace-key",
        "wk-network",
        "--network",
        "rtt=300ms,jitter=20ms,loss=1%",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [
            (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            for _ in range(3)
        ]
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", lines[0])
        assert url, lines
        assert lines[2] == "Network: rtt=300ms,jitter=20ms,loss=1%\n", lines
        # Twice: the second one reuses the kept-alive connection (no handshake).
        for _ in range(2):
            assert await _timed_session_request(http, url[1], "wk-network") >= 0.3
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_bad_network_profile_is_refused(socket_enabled: None) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulator",
        "--port",
        "0",
        "--network",
        "rtt=80ms,loss=150%",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"loss must be between 0 and 100%" in err


async def test_without_a_network_http_answers_at_once(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The same request on straight loopback, the baseline of the test above."""
    assert await _timed_session_request(http, emulator.url, WORKSPACE_KEY) < 0.3


async def test_media_passes_under_loss_and_set_up_pays_the_round_trips(
    emulator: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A spoken turn works through a lossy, slow network; the relay really drops."""
    rtt = 0.08
    emulator.network = NetworkProfile(rtt=rtt, jitter=0.01, loss=0.05, seed=7)
    emulator.assistant().add_turn(Turn(transcript="lights", reply="Turning them on."))
    speech = speak("Turn on the kitchen light.", tmp_path)
    connection = RealtimeConnection(make_client(http, emulator.url))
    heard: list[str] = []
    connection.add_listener(lambda event: heard.append(event["type"]))
    try:
        start = time.perf_counter()
        await connection.connect()
        # The sessions request and the SDP request: one round trip each, at least.
        assert time.perf_counter() - start >= 2 * rtt
        session = emulator.sessions[-1]
        assert session.relays
        listening = connection.speaker.subscribe()  # the reply's voice, as a turn does
        say(connection, speech)
        async with asyncio.timeout(30):
            while "response.done" not in heard:
                await asyncio.sleep(0.05)
            while listening.chunks_received < 50:
                await asyncio.sleep(0.05)
    finally:
        await connection.close()
    # The user's speech crossed the lossy link and the service's VAD heard it.
    assert session.speech_started_count == 1
    assert session.inbound_voiced_ms >= 300
    # ...and datagrams really were dropped on the way, both ways counted.
    assert sum(relay.dropped for relay in session.relays) > 0
    assert sum(relay.forwarded for relay in session.relays) > 100
