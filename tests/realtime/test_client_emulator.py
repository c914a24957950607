"""The HTTP client against the emulator: enrollment, headers, REST, typed errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from custom_components.itannix.realtime import (
    AuthenticationError,
    BadRequestError,
    CannotConnectError,
    Credentials,
    ItanniXClient,
    RateLimitedError,
    ServerError,
)
from tests.conftest import WORKSPACE_KEY

from .conftest import CLIENT_ID, CLIENT_SECRET

if TYPE_CHECKING:
    import aiohttp

    from tests.emulator import Emulator

OTHER_SECRET = "baadf00d" * 5


async def test_enrollment_verification_and_mismatch(
    emulator: Emulator, http: aiohttp.ClientSession, client: ItanniXClient
) -> None:
    assert not emulator.is_enrolled(CLIENT_ID)
    first = await client.create_session()
    assert first.id
    assert first.ice_servers == []
    assert emulator.is_enrolled(CLIENT_ID)
    # Same secret: verified.
    assert (await client.create_session()).id != first.id

    impostor = ItanniXClient(
        http,
        emulator.url,
        Credentials(CLIENT_ID, OTHER_SECRET, workspace_key=WORKSPACE_KEY),
    )
    with pytest.raises(AuthenticationError) as info:
        await impostor.create_session()
    err = info.value
    assert err.status == 401
    assert err.message == "Client secret does not match the enrolled secret"
    assert err.hint is not None
    assert "dashboard" in err.hint
    for text in (str(err), repr(err), err.message, err.hint):
        assert OTHER_SECRET not in text
        assert CLIENT_SECRET not in text
        assert WORKSPACE_KEY not in text

    # The dashboard reset lets a new secret enroll.
    emulator.reset_enrollment(CLIENT_ID)
    assert (await impostor.create_session()).id
    with pytest.raises(AuthenticationError):
        await client.create_session()


async def test_headers_the_service_receives(
    emulator: Emulator, http: aiohttp.ClientSession, credentials: Credentials
) -> None:
    client = ItanniXClient(
        http, emulator.url, credentials, assistant_id="kitchen", app_source="ha-test"
    )
    await client.create_session(["text"])
    session = emulator.sessions[-1]
    assert session.assistant_id == "kitchen"
    assert session.app_source == "ha-test"
    assert session.modalities == ["text"]
    assert session.headers["X-Client-Id"] == CLIENT_ID
    # Sent (the emulator redacts what it records).
    assert session.headers["X-Client-Secret"] != ""
    assert session.headers["X-Workspace-Key"] != ""


async def test_missing_workspace_key(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    client = ItanniXClient(http, emulator.url, Credentials(CLIENT_ID, CLIENT_SECRET))
    with pytest.raises(AuthenticationError) as info:
        await client.create_session()
    assert info.value.message == "Invalid workspace key"
    assert not emulator.is_enrolled(CLIENT_ID)


async def test_short_secret_is_a_bad_request(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    client = ItanniXClient(
        http, emulator.url, Credentials(CLIENT_ID, "short", workspace_key=WORKSPACE_KEY)
    )
    with pytest.raises(BadRequestError) as info:
        await client.create_session()
    assert info.value.status == 400
    assert "short" not in str(info.value)


async def test_rate_limited_with_retry_after(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.status["sessions"] = 429
    emulator.faults.retry_after = 7
    with pytest.raises(RateLimitedError) as info:
        await client.create_session()
    assert info.value.retry_after == 7.0
    assert info.value.status == 429


async def test_server_error_carries_message_and_hint(
    emulator: Emulator, client: ItanniXClient
) -> None:
    emulator.faults.status["sessions"] = 503
    emulator.faults.body["sessions"] = {
        "message": "Maintenance",
        "hint": "Back in 5 minutes",
    }
    with pytest.raises(ServerError) as info:
        await client.create_session()
    assert info.value.status == 503
    assert info.value.message == "Maintenance"
    assert info.value.hint == "Back in 5 minutes"
    assert "Back in 5 minutes" in str(info.value)


async def test_sdp_timeout_is_cannot_connect(
    emulator: Emulator, http: aiohttp.ClientSession, credentials: Credentials
) -> None:
    client = ItanniXClient(http, emulator.url, credentials, timeout=0.5)
    emulator.faults.delay["sessions"] = 2.0
    with pytest.raises(CannotConnectError):
        await client.create_session()


async def test_connection_refused_is_cannot_connect(
    socket_enabled: None, http: aiohttp.ClientSession, credentials: Credentials
) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    client = ItanniXClient(http, "http://127.0.0.1:9", credentials, timeout=2.0)
    with pytest.raises(CannotConnectError):
        await client.create_session()


async def test_voices_and_text_to_speech(
    emulator: Emulator, client: ItanniXClient
) -> None:
    voices = await client.list_voices()
    assert voices
    assert all(v.voice_id and v.name for v in voices)
    speech = await client.synthesize(voices[0].voice_id, "Hello from the test.")
    assert speech.audio_url.startswith(emulator.url)
    assert speech.expires_in
    audio = await client.fetch_audio(speech.audio_url)
    assert audio[:4] == b"RIFF"
    assert audio[8:12] == b"WAVE"
    assert len(audio) > 1000
    # A tampered (or expired) signed URL is a bad request, not an auth failure.
    with pytest.raises(BadRequestError) as info:
        await client.fetch_audio(speech.audio_url.replace("sig=", "sig=0"))
    assert info.value.status == 403
    assert info.value.code == "INVALID_SIGNATURE"


async def test_rest_errors(emulator: Emulator, client: ItanniXClient) -> None:
    with pytest.raises(BadRequestError) as info:
        await client.synthesize("no-such-voice", "Hi")
    assert info.value.status == 404
    assert info.value.message
    voice = (await client.list_voices())[0].voice_id
    with pytest.raises(BadRequestError) as info:
        await client.synthesize(voice, "x" * 15_001)
    assert info.value.status == 400
    emulator.faults.status["voices"] = 500
    with pytest.raises(ServerError):
        await client.list_voices()
