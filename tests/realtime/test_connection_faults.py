"""Each emulator fault knob: the right typed error, and nothing left running."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import pytest

from custom_components.itannix.realtime import (
    AuthenticationError,
    BadRequestError,
    CannotConnectError,
    Credentials,
    ItanniXClient,
    ItanniXError,
    ProtocolError,
    RateLimitedError,
    RealtimeConnection,
    RealtimeSession,
    ServerError,
)
from tests.emulator import Emulator, Turn

from .conftest import CLIENT_ID, CLIENT_SECRET

if TYPE_CHECKING:
    import aiohttp


async def connect_expecting(
    client: ItanniXClient, error: type[ItanniXError], **options: float
) -> tuple[RealtimeConnection, ItanniXError]:
    connection = RealtimeConnection(client, **options)
    with pytest.raises(error) as info:
        await connection.connect()
    # A failed connect releases everything itself.
    assert connection.closed
    assert not connection.speaker.running
    assert connection.microphone.readyState == "ended"
    pc = connection.peer_connection
    assert pc is None or pc.connectionState == "closed"
    return connection, info.value


@pytest.mark.parametrize(
    ("endpoint", "status", "error"),
    [
        ("sessions", 503, ServerError),
        ("sessions", 500, ServerError),
        ("sessions", 403, AuthenticationError),
        ("sdp", 400, BadRequestError),
        ("sdp", 502, ServerError),
        ("sdp", 429, RateLimitedError),
    ],
)
async def test_http_faults(
    emulator: Emulator,
    client: ItanniXClient,
    endpoint: str,
    status: int,
    error: type[ItanniXError],
) -> None:
    emulator.faults.status[endpoint] = status
    _, err = await connect_expecting(client, error)
    assert err.status == status
    assert err.message  # the service's words, shown to the user


async def test_rate_limited_connect(emulator: Emulator, client: ItanniXClient) -> None:
    emulator.faults.status["sessions"] = 429
    emulator.faults.retry_after = 30
    _, err = await connect_expecting(client, RateLimitedError)
    assert isinstance(err, RateLimitedError)
    assert err.retry_after == 30.0


async def test_malformed_sdp_answer(emulator: Emulator, client: ItanniXClient) -> None:
    emulator.faults.malformed_sdp = True
    await connect_expecting(client, ProtocolError)


async def test_no_answer_times_out(
    emulator: Emulator, http: aiohttp.ClientSession, credentials: Credentials
) -> None:
    client = ItanniXClient(http, emulator.url, credentials, timeout=1.0)
    emulator.faults.no_answer = True
    started = time.monotonic()
    await connect_expecting(client, CannotConnectError, connect_timeout=30.0)
    # Bounded by the client's 1 s timeout, not the 30 s connect timeout.
    assert time.monotonic() - started < 10


async def test_slow_sdp_hits_connect_timeout(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.delay["sdp"] = 3.0
    await connect_expecting(client, CannotConnectError, connect_timeout=0.5)


async def test_workspace_key_missing(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    client = ItanniXClient(http, emulator.url, Credentials(CLIENT_ID, CLIENT_SECRET))
    _, err = await connect_expecting(client, AuthenticationError)
    assert err.message == "Invalid workspace key"


async def test_peer_closed_after_open(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.close_peer_after_open = True
    connection = RealtimeConnection(client)
    # It may close before connect() returns, or just after.
    with contextlib.suppress(CannotConnectError):
        await connection.connect()
    async with asyncio.timeout(10):
        reason = await connection.wait_closed()
    assert isinstance(reason, CannotConnectError)
    assert connection.closed
    assert not connection.speaker.running
    with pytest.raises(CannotConnectError):
        await connection.send({"type": "response.create"})
    await connection.close()


async def test_dropped_channel_mid_reply(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.drop_channel_mid_reply = True
    emulator.assistant().add_turn(Turn(reply="This reply will be cut short."))
    session = await RealtimeSession.open(client)
    try:
        reply = await session.ask("hello")
        deltas: list[str] = []

        async def read() -> None:
            async with asyncio.timeout(10):
                async for delta in reply:
                    deltas.append(delta)  # noqa: PERF401 - keep what came before the drop

        with pytest.raises(CannotConnectError):
            await read()
        assert deltas == ["This"]
        with pytest.raises(CannotConnectError):
            await reply.text()
        assert session.closed
        async with asyncio.timeout(10):
            await session.connection.wait_closed()
        # A new question on a dead session fails fast and typed.
        with pytest.raises(CannotConnectError):
            await session.ask("again?")
    finally:
        await session.close()
