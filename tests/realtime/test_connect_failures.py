"""A failure to reach the service says which part failed, in words a user can act on.

"Cannot connect to host … ssl:default [Domain name not found]" tells a user nothing;
these errors name the host and the kind of failure: a name that does not resolve, a
port nobody listens on, a server that does not answer, or a server that answers over
HTTPS while the WebRTC media path (UDP, TURN) stays blocked.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from custom_components.itannix.realtime import (
    CannotConnectError,
    ConnectFailure,
    Credentials,
    ItanniXClient,
    RealtimeConnection,
)
from tests.network import NoSuchNameResolver

if TYPE_CHECKING:
    from tests.emulator import Emulator


async def _connect_error(client: ItanniXClient, **options: Any) -> CannotConnectError:
    connection = RealtimeConnection(client, **options)
    with pytest.raises(CannotConnectError) as info:
        await connection.connect()
    assert connection.closed
    return info.value


async def test_unresolvable_name(credentials: Credentials) -> None:
    connector = aiohttp.TCPConnector(resolver=NoSuchNameResolver())
    async with aiohttp.ClientSession(connector=connector) as http:
        client = ItanniXClient(http, "https://api.itannix.test", credentials)
        err = await _connect_error(client)
    assert err.reason is ConnectFailure.UNRESOLVED
    assert err.host == "api.itannix.test"
    assert str(err) == "The server name api.itannix.test could not be resolved"


async def test_nothing_listens(
    socket_enabled: None, http: aiohttp.ClientSession, credentials: Credentials
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ItanniXClient(http, f"http://127.0.0.1:{port}", credentials)
    err = await _connect_error(client)
    assert err.reason is ConnectFailure.REFUSED
    assert str(err) == "127.0.0.1 refused the connection"


async def test_no_answer_in_time(
    emulator: Emulator, http: aiohttp.ClientSession, credentials: Credentials
) -> None:
    emulator.faults.delay["sessions"] = 5.0
    client = ItanniXClient(http, emulator.url, credentials, timeout=0.5)
    err = await _connect_error(client)
    assert err.reason is ConnectFailure.TIMEOUT
    assert str(err) == "127.0.0.1 did not answer in time"


async def test_media_blocked_is_told_apart_from_unreachable(
    emulator: Emulator, client: ItanniXClient
) -> None:
    """HTTPS answers (session, SDP) but no datagram passes: not "unreachable"."""
    emulator.faults.media_blocked = True
    err = await _connect_error(client, connect_timeout=3.0)
    assert err.reason is ConnectFailure.MEDIA
    assert err.host == "127.0.0.1"
    assert "WebRTC" in str(err)
    # The service did answer: both HTTP requests went through.
    (far_end,) = emulator.sessions
    assert far_end.has_peer
    # Its peer is still checking for a client it cannot hear: end it like the
    # service's own ICE timeout would.
    await far_end.close()


async def test_a_drop_after_opening_is_a_drop(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.close_peer_after_open = True
    connection = RealtimeConnection(client)
    try:
        await connection.connect()
        with pytest.raises(CannotConnectError) as info:
            async for _ in connection.events():
                pass
    finally:
        await connection.close()
    assert info.value.reason is ConnectFailure.DROPPED
