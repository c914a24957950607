"""The library against a hostile far end: nothing it sends leaks a credential or ends a session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import gc
import json
import logging
import struct
import time
from typing import Any

import aiohttp
import aioice.ice
import pytest
from yarl import URL

from custom_components.itannix.realtime import (
    CannotConnectError,
    Credentials,
    ItanniXClient,
    ProtocolError,
    RateLimitedError,
    RealtimeConnection,
    RealtimeSession,
    ServerError,
)
from custom_components.itannix.realtime.client import _audio_redirect
from custom_components.itannix.realtime.errors import (
    InvalidUrlError,
    InvalidValueError,
    RedirectError,
)
from custom_components.itannix.realtime.ice import GATHER_TIMEOUT
from tests.hostile import DCEP_ACK, DCEP_OPEN, WEBRTC_DCEP, Answer, HostilePeer

from .conftest import CLIENT_ID, CLIENT_SECRET

WORKSPACE_KEY = "wk-hostile-0123456789"
CREDENTIALS = Credentials(CLIENT_ID, CLIENT_SECRET, workspace_key=WORKSPACE_KEY)


@pytest.fixture
async def hostile(socket_enabled: None) -> AsyncIterator[HostilePeer]:
    async with HostilePeer() as peer:
        yield peer


@pytest.fixture
async def elsewhere(socket_enabled: None) -> AsyncIterator[HostilePeer]:
    """Another origin, where a redirect points."""
    async with HostilePeer() as peer:
        yield peer


@pytest.fixture
def client(hostile: HostilePeer, http: aiohttp.ClientSession) -> ItanniXClient:
    return ItanniXClient(http, hostile.url, CREDENTIALS, timeout=5.0)


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler ("Task exception was never retrieved")."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


def assert_no_credentials(peer: HostilePeer) -> None:
    for request in peer.requests:
        values = " ".join(f"{k}: {v}" for k, v in request.headers.items())
        assert CLIENT_SECRET not in values
        assert WORKSPACE_KEY not in values


async def deliver(
    session: RealtimeSession,
    send: Callable[[], Awaitable[None] | None],
    timeout: float = 10,
) -> None:
    """Send something from the far end and wait until the session has taken it in.

    Attributing a stray event to the right turn is the turn model's job (and its
    tests'); here the bad message arrives between turns.
    """
    with session.connection.events() as events:
        async with asyncio.timeout(timeout):
            if (sending := send()) is not None:
                await sending
        await events.next_of(["hostile.marker"], timeout)


async def ask(session: RealtimeSession, text: str = "ping") -> str:
    async with asyncio.timeout(10):
        reply = await session.ask(text)
        return await reply.text()


# -- Credentials ------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["sessions", "sdp"])
async def test_redirect_never_takes_the_credentials_along(
    hostile: HostilePeer,
    elsewhere: HostilePeer,
    client: ItanniXClient,
    status: int,
    endpoint: str,
) -> None:
    """A redirect is refused, typed, and says where it pointed; nothing goes there."""
    target = f"{elsewhere.url}/v1/realtime?token=abc"
    hostile.answers[endpoint] = Answer(status, headers={"Location": target})
    connection = RealtimeConnection(client, connect_timeout=10)
    with pytest.raises(RedirectError) as info:
        await connection.connect()
    assert info.value.status == status
    assert info.value.location == elsewhere.url  # the origin only: no path, no token
    assert "token" not in str(info.value)
    assert isinstance(info.value, InvalidUrlError)  # the URL is what to fix
    assert elsewhere.requests == []
    assert connection.closed


async def test_redirect_to_plain_http_elsewhere_is_refused(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["sessions"] = Answer(
        307, headers={"Location": "http://collector.example:80/steal"}
    )
    with pytest.raises(RedirectError) as info:
        await client.create_session()
    assert info.value.location == "http://collector.example"


async def test_redirect_without_location(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["sessions"] = Answer(302)
    with pytest.raises(RedirectError) as info:
        await client.create_session()
    assert info.value.location is None


async def test_echoed_credentials_are_scrubbed_from_every_field(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["sessions"] = Answer(
        500,
        body=json.dumps(
            {
                "message": f"bad secret {CLIENT_SECRET}",
                "hint": f"key {WORKSPACE_KEY}",
                "code": f"E_{CLIENT_SECRET}_{WORKSPACE_KEY}",
            }
        ),
    )
    with pytest.raises(ServerError) as info:
        await client.create_session()
    err = info.value
    for text in (err.message, err.hint, err.code, str(err), repr(err)):
        assert CLIENT_SECRET not in (text or "")
        assert WORKSPACE_KEY not in (text or "")
    assert err.code is not None
    assert err.code.startswith("E_")


async def test_audio_follows_a_redirect_without_credentials(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    """Signed audio URLs may redirect to storage: followed, nothing secret sent."""
    hostile.answers["audio"] = Answer(302, headers={"Location": "/storage/a.wav"})
    audio = await client.fetch_audio(f"{hostile.url}/v1/app/audio/1")
    assert audio.startswith(b"RIFF")
    assert [r.path for r in hostile.requests] == ["/v1/app/audio/1", "/storage/a.wav"]
    assert_no_credentials(hostile)


@pytest.mark.parametrize("path", ["/v1/app/audio/1", "/api/states"])
async def test_audio_url_of_an_https_service_is_never_plain_http(
    hostile: HostilePeer, http: aiohttp.ClientSession, path: str
) -> None:
    """An https service handing out an http URL, even to this machine: not fetched.

    Home Assistant would otherwise GET whatever listens on its own loopback because
    the service said so (a signed URL never needs to).
    """
    client = ItanniXClient(http, "https://api.example.invalid", CREDENTIALS)
    with pytest.raises(ProtocolError, match="plain http"):
        await client.fetch_audio(f"{hostile.url}{path}")
    assert hostile.requests == []


async def test_unreachable_audio_names_its_own_host(
    client: ItanniXClient, hostile: HostilePeer
) -> None:
    """Storage that cannot be reached is named, not the service that answered."""
    hostile.answers["audio"] = Answer(
        302, headers={"Location": "http://localhost:9/a.wav"}
    )
    with pytest.raises(CannotConnectError) as info:
        await client.fetch_audio(f"{hostile.url}/v1/app/audio/1")
    assert info.value.host == "localhost"
    assert "localhost" in str(info.value)


async def test_audio_redirect_loop_is_bounded(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["audio"] = Answer(302, headers={"Location": "/v1/app/audio/2"})
    with pytest.raises(ProtocolError):
        await client.fetch_audio(f"{hostile.url}/v1/app/audio/1")
    assert len(hostile.requests) <= 4


@pytest.mark.parametrize(
    ("current", "location"),
    [
        ("https://api.example.net/a.wav", "http://api.example.net/a.wav"),
        ("http://127.0.0.1:1/a.wav", "http://storage.example.net/a.wav"),
        ("https://api.example.net/a.wav", "ftp://api.example.net/a.wav"),
        ("https://api.example.net/a.wav", ""),
        ("https://api.example.net/a.wav", "http://[::1"),
    ],
)
def test_audio_redirect_not_followed(current: str, location: str) -> None:
    with pytest.raises(ProtocolError):
        _audio_redirect(URL(current), location)


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\x00b", "caf\u00e9", "a b", ""])
@pytest.mark.parametrize("field", ["client_id", "workspace_key", "assistant_id"])
async def test_a_value_no_header_can_carry_is_refused_before_sending(
    hostile: HostilePeer, http: aiohttp.ClientSession, field: str, value: str
) -> None:
    """Typed and named, never echoed, and nothing is sent (aiohttp raised ValueError)."""
    if field != "client_id" and not value:
        pytest.skip("an empty workspace key or assistant ID is simply not sent")
    values = {"client_id": CLIENT_ID, "workspace_key": WORKSPACE_KEY, field: value}
    with pytest.raises(InvalidValueError) as info:
        ItanniXClient(
            http,
            hostile.url,
            Credentials(values["client_id"], CLIENT_SECRET, values["workspace_key"]),
            assistant_id=values.get("assistant_id"),
        )
    assert info.value.field == field
    assert not value or value not in str(info.value)
    assert hostile.requests == []


async def test_assistant_id_is_sent_trimmed(
    hostile: HostilePeer, http: aiohttp.ClientSession
) -> None:
    client = ItanniXClient(http, hostile.url, CREDENTIALS, assistant_id=" asst_1\n")
    await client.create_session()
    assert hostile.requests[-1].headers["X-Assistant-Id"] == "asst_1"


# -- Garbage answers --------------------------------------------------------------


async def test_retry_after_of_infinity_is_not_passed_on(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["sessions"] = Answer(429, headers={"Retry-After": "1e400"})
    with pytest.raises(RateLimitedError) as info:
        await client.create_session()
    assert info.value.retry_after is None


async def test_bogus_charset_still_reads(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["sessions"] = Answer(
        200,
        body=json.dumps({"id": "sess_1", "iceServers": []}),
        headers={"Content-Type": "application/json; charset=no-such-charset"},
    )
    assert (await client.create_session()).id == "sess_1"


async def test_huge_answer_is_refused_not_read_whole(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    hostile.answers["sessions"] = Answer(200, body="x" * (3 << 20))
    with pytest.raises(ProtocolError, match="too large"):
        await client.create_session()


# -- One message must never end a session -------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "[" * 100_000,
        '{"type": ' * 20_000,
        "not json",
        "[1, 2, 3]",
        '{"no": "type"}',
        '{"type": 42}',
        '{"type": "response.done", "response": "nonsense"}',
        '{"type": "error", "error": [1, 2]}',
        '{"type": "response.output_item.done", "item": {"type": "function_call"}}',
        "",
    ],
    ids=lambda message: repr(message[:24]),
)
async def test_a_bad_message_does_not_end_the_session(
    hostile: HostilePeer, client: ItanniXClient, message: str
) -> None:
    session = await RealtimeSession.open(client)
    try:
        far = await hostile.wait_session()

        def send() -> None:
            far.send_text(message)
            far.send_event({"type": "hostile.marker"})

        await deliver(session, send)
        assert await ask(session) == "pong 1"
        assert not session.closed
    finally:
        await session.close()


async def test_invalid_utf8_text_does_not_end_the_session(
    hostile: HostilePeer, client: ItanniXClient, caplog: pytest.LogCaptureFixture
) -> None:
    session = await RealtimeSession.open(client)
    try:
        far = await hostile.wait_session()

        def send() -> None:
            far.send_raw_text(b'{"type": "\xff\xfe"}')
            far.send_raw_text(b"\xc3\x28")
            far.send_event({"type": "hostile.marker"})

        await deliver(session, send)
        assert await ask(session) == "pong 1"
        assert not session.closed
    finally:
        await session.close()
    about = [r.levelno for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert about.count(logging.WARNING) == 1  # once, the second at debug
    assert len(about) == 2


def _dcep_open(label: bytes) -> bytes:
    """A DATA_CHANNEL_OPEN (RFC 8832): reliable, ordered, ``label``, no protocol."""
    return struct.pack("!BBHLHH", DCEP_OPEN, 0, 0, 0, len(label), 0) + label


@pytest.mark.parametrize(
    ("pp_id", "data", "stream"),
    [
        # An ACK for a channel never opened: aiortc asserts it knows the stream.
        (WEBRTC_DCEP, bytes([DCEP_ACK]), 7),
        # An OPEN for the channel already open: aiortc asserts it is new.
        (WEBRTC_DCEP, _dcep_open(b"messages"), None),
        # An OPEN whose label is not UTF-8: aiortc decodes it first.
        (WEBRTC_DCEP, _dcep_open(b"\xff\xfe"), 9),
    ],
    ids=["ack-unknown-stream", "open-existing-stream", "open-invalid-label"],
)
async def test_a_bad_control_message_does_not_end_the_session(
    hostile: HostilePeer,
    client: ItanniXClient,
    caplog: pytest.LogCaptureFixture,
    pp_id: int,
    data: bytes,
    stream: int | None,
) -> None:
    """Data channel control messages no peer should send: dropped, the session lives."""
    session = await RealtimeSession.open(client)
    try:
        far = await hostile.wait_session()

        def send() -> None:
            far.send_raw(pp_id, data, stream)
            far.send_event({"type": "hostile.marker"})

        await deliver(session, send)
        assert await ask(session) == "pong 1"
        assert not session.closed
    finally:
        await session.close()
    ours = [r for r in caplog.records if r.name.startswith("custom_components")]
    assert [r.levelno for r in ours if r.levelno >= logging.WARNING] == [
        logging.WARNING
    ]


async def test_junk_storm_logs_each_kind_once(
    hostile: HostilePeer, client: ItanniXClient, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 bad messages: two warnings, and the next turns answered once each.

    (The flood is paced: thousands of messages queued at once only measure how
    aiortc's SCTP copes with its own backlog.)
    """
    caplog.set_level(logging.INFO)
    session = await RealtimeSession.open(client)
    kinds = [
        "not json",
        "[1]",
        '{"type": 1}',
        '{"type": "response.text.delta", "delta": 5}',
        '{"type": "conversation.item.input_audio_transcription.completed"}',
    ]
    try:
        far = await hostile.wait_session()

        async def send() -> None:
            for i in range(2_000):
                far.send_text(kinds[i % len(kinds)])
                if i % 20 == 19:
                    await far.drain(below=2048)
            far.send_event({"type": "hostile.marker"})

        await deliver(session, send, timeout=60)
        assert await ask(session) == "pong 1"
        assert await ask(session) == "pong 2"
    finally:
        await session.close()
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("custom_components")
    ]
    # Two kinds of junk (not JSON, no type): two lines. Absurd nesting, a third kind,
    # is sent alone above: 100 kB messages in bulk only measure aiortc's SCTP.
    assert len(warnings) == 2, [r.getMessage() for r in warnings]


# -- ICE ----------------------------------------------------------------------------


async def test_unusable_ice_servers_are_dropped_and_logged_once(
    hostile: HostilePeer, client: ItanniXClient, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.ice_servers = [
        {"urls": ["stun:127.0.0.1:99999", "stun:999.1.1.1", "stun:-bad-.example"]},
        {"urls": "turn:127.0.0.1:70000", "username": "u", "credential": "c"},
        {
            "urls": "turn:relay.example.net?transport=sctp",
            "username": "u",
            "credential": "c",
        },
    ]
    for _ in range(2):
        started = time.monotonic()
        async with RealtimeConnection(client, connect_timeout=10) as connection:
            assert connection.is_open
        assert time.monotonic() - started < 5  # no hang, no 20 s connect timeout
    # Ours only: asyncio's debug mode warns of slow callbacks on a loaded machine.
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("custom_components")
    ]
    assert len(warnings) == 5, warnings  # five bad URLs, each once over two set-ups
    assert all("Ignoring ICE server" in w for w in warnings)


class _SilentUdp(asyncio.DatagramProtocol):
    """A STUN server that never answers: it only counts what it is sent."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


async def _set_up_time(client: ItanniXClient) -> float:
    started = time.monotonic()
    async with RealtimeConnection(client, connect_timeout=15) as connection:
        assert connection.is_open
    return time.monotonic() - started


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_a_silent_ice_server_costs_one_bounded_wait(
    hostile: HostilePeer, client: ItanniXClient, kind: str
) -> None:
    """A STUN or TURN server that never answers: one bounded wait, then none.

    Beside the baseline of the same set-up with no ICE server at all; aioice alone
    would wait 5 s for it on every set-up.
    """
    loop = asyncio.get_running_loop()
    transport, silent = await loop.create_datagram_endpoint(
        _SilentUdp, local_addr=("127.0.0.1", 0)
    )
    try:
        baseline = await _set_up_time(client)
        port = transport.get_extra_info("sockname")[1]
        hostile.ice_servers = [
            {"urls": [f"stun:127.0.0.1:{port}"]}
            if kind == "stun"
            else {"urls": f"turn:127.0.0.1:{port}", "username": "u", "credential": "c"}
        ]
        first = await _set_up_time(client)
        assert silent.received > 0  # it was asked
        asked = silent.received
        second = await _set_up_time(client)
        assert silent.received == asked  # known silent: not asked again
    finally:
        transport.close()
    print(  # noqa: T201 - the figures the issue asks for
        f"\nset-up: no ICE server {baseline:.2f} s; silent {kind} first {first:.2f} s, "
        f"then {second:.2f} s (bound {GATHER_TIMEOUT} s; aioice alone waits 5 s)"
    )
    assert first - baseline < GATHER_TIMEOUT + 1.0
    assert second - baseline < 1.0


# -- Drops --------------------------------------------------------------------------


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE consent checks every 0.1 s instead of 5 s: a lost network shows in seconds."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)


async def test_lost_network_closes_cleanly(
    hostile: HostilePeer,
    client: ItanniXClient,
    fast_consent: None,
    loop_errors: list[dict[str, Any]],
) -> None:
    """A drop ends the session with a clear reason, frees the peer, fails no task."""
    session = await RealtimeSession.open(client)
    far = await hostile.wait_session()
    assert await ask(session) == "pong 1"
    far.cut_network()
    async with asyncio.timeout(20):
        reason = await session.connection.wait_closed()
    assert isinstance(reason, CannotConnectError)
    with pytest.raises(CannotConnectError):
        await ask(session)
    await session.close()
    pc = session.connection.peer_connection
    assert pc is not None
    assert pc.connectionState == "closed"
    del session, pc
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.1)
    assert loop_errors == []


async def test_echoed_credentials_are_scrubbed_from_channel_errors(
    hostile: HostilePeer, client: ItanniXClient
) -> None:
    """An error event about our request that quotes the secret: the turn fails clean."""
    session = await RealtimeSession.open(client)
    try:
        far = await hostile.wait_session()
        far.answer_turns = False
        reply = await session.ask("hello")
        async with asyncio.timeout(10):
            while not any(e.get("type") == "response.create" for e in far.received):
                await asyncio.sleep(0.01)
        request = next(e for e in far.received if e.get("type") == "response.create")
        far.send_event(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": f"bad_{WORKSPACE_KEY}",
                    "message": f"secret {CLIENT_SECRET} refused",
                    "event_id": request["event_id"],
                },
            }
        )
        with pytest.raises(ProtocolError) as info:
            async with asyncio.timeout(10):
                await reply.text()
        for text in (info.value.message, info.value.code, str(info.value)):
            assert CLIENT_SECRET not in (text or "")
            assert WORKSPACE_KEY not in (text or "")
    finally:
        await session.close()
