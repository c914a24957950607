"""The emulator behaves like the documented ItanniX service, over real loopback HTTP."""

from __future__ import annotations

from array import array
import asyncio
import contextlib
import io
import json
import math
from pathlib import Path
import re
import signal
import sys
from typing import TYPE_CHECKING, Any
import wave

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
import pytest

from tests.conftest import WORKSPACE_KEY
from tests.emulator import Emulator, FunctionCallSpec, Turn
from tests.emulator.vad import RMS_THRESHOLD, frame_rms
from tests.emulator.voice import SpeakerTrack, Synthesizer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "0b5c3c1e-4d0f-4f5e-9a53-8f1c2f3d4e5a"
SECRET = "a" * 64
OTHER_SECRET = "b" * 64

# An offer with only a data channel: what a text-only client would naively send.
OFFER_WITHOUT_AUDIO = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 127.0.0.1
a=mid:0
a=sctp-port:5000
a=setup:actpass
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
""".replace("\n", "\r\n")

# Enough of an audio offer to get past the audio check (for SDP faults only).
OFFER_WITH_AUDIO_LINE = OFFER_WITHOUT_AUDIO.replace(
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2",
)


def auth_headers(
    secret: str = SECRET,
    client_id: str = CLIENT_ID,
    workspace_key: str | None = WORKSPACE_KEY,
    **extra: str,
) -> dict[str, str]:
    headers = {"X-Client-Id": client_id, "X-Client-Secret": secret, **extra}
    if workspace_key is not None:
        headers["X-Workspace-Key"] = workspace_key
    return headers


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@contextlib.asynccontextmanager
async def own_emulator(**kwargs: Any) -> AsyncIterator[Emulator]:
    """Run an emulator built the way a test needs it, always stopped."""
    emu = Emulator(host="127.0.0.1", port=0, **kwargs)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


async def create_session(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    async with http.post(
        f"{url}/v1/realtime/sessions",
        json={"modalities": ["text", "audio"]},
        headers=headers,
    ) as resp:
        await resp.read()
        return resp


# -- Authentication --------------------------------------------------------------


async def test_tofu_enrolls_verifies_rejects_and_resets(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    assert not emulator.is_enrolled(CLIENT_ID)
    resp = await create_session(http, emulator.url, auth_headers())
    assert resp.status == 200
    assert emulator.is_enrolled(CLIENT_ID)
    assert (await create_session(http, emulator.url, auth_headers())).status == 200

    async with http.post(
        f"{emulator.url}/v1/realtime/sessions",
        json={"modalities": ["text"]},
        headers=auth_headers(OTHER_SECRET),
    ) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body == {
        "message": "Client secret does not match the enrolled secret",
        "hint": "Reset the client's secret in the ItanniX dashboard",
    }

    emulator.reset_enrollment(CLIENT_ID)
    assert not emulator.is_enrolled(CLIENT_ID)
    assert (
        await create_session(http, emulator.url, auth_headers(OTHER_SECRET))
    ).status == 200
    # The new secret is the enrolled one now; the old one is refused.
    assert (await create_session(http, emulator.url, auth_headers())).status == 401


async def test_enrollment_survives_restart_without_storing_the_secret(
    socket_enabled: None, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state_file = tmp_path / "enrollments.json"
    async with own_emulator(workspace_key=WORKSPACE_KEY, state_file=state_file) as emu:
        assert (await create_session(http, emu.url, auth_headers())).status == 200
    assert SECRET not in state_file.read_text()

    async with own_emulator(workspace_key=WORKSPACE_KEY, state_file=state_file) as emu:
        assert emu.is_enrolled(CLIENT_ID)
        assert (
            await create_session(http, emu.url, auth_headers(OTHER_SECRET))
        ).status == 401
        assert (await create_session(http, emu.url, auth_headers())).status == 200


async def test_workspace_key_required_unless_legacy_mode(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    for headers in (
        auth_headers(workspace_key=None),
        auth_headers(workspace_key="wrong"),
    ):
        async with http.post(
            f"{emulator.url}/v1/realtime/sessions", json={}, headers=headers
        ) as resp:
            assert resp.status == 401
            body = await resp.json()
        assert body["message"] == "Invalid workspace key"
        assert body["hint"]
    # A rejected workspace key enrolls nothing.
    assert not emulator.is_enrolled(CLIENT_ID)

    async with own_emulator(workspace_key=None) as legacy:
        resp = await create_session(http, legacy.url, auth_headers(workspace_key=None))
        assert resp.status == 200


async def test_short_secret_and_missing_client_id_are_bad_requests(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    assert (
        await create_session(http, emulator.url, auth_headers("x" * 31))
    ).status == 400
    headers = auth_headers()
    del headers["X-Client-Id"]
    assert (await create_session(http, emulator.url, headers)).status == 400
    assert not emulator.is_enrolled(CLIENT_ID)


async def test_session_records_headers_without_secrets(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    headers = auth_headers(
        **{"X-Assistant-Id": "kitchen", "X-App-Source": "home-assistant"}
    )
    async with http.post(
        f"{emulator.url}/v1/realtime/sessions",
        json={"modalities": ["text"]},
        headers=headers,
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["id"].startswith("sess_")
    assert body["iceServers"] == []
    session = emulator.sessions[-1]
    assert session.id == body["id"]
    assert session.assistant_id == "kitchen"
    assert session.app_source == "home-assistant"
    assert session.modalities == ["text"]
    assert session.headers["X-Client-Secret"] == "***"
    assert session.headers["X-Workspace-Key"] == "***"
    assert SECRET not in repr(emulator.sessions) + repr(emulator.requests)


# -- SDP endpoint ----------------------------------------------------------------


async def test_offer_without_audio_is_refused(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    await create_session(http, emulator.url, auth_headers())
    async with http.post(
        f"{emulator.url}/v1/realtime",
        data=OFFER_WITHOUT_AUDIO,
        headers={**auth_headers(), "Content-Type": "application/sdp"},
    ) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert "requires audio input" in body["message"]
    assert not emulator.sessions[-1].has_peer


async def test_malformed_sdp_fault(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.faults.malformed_sdp = True
    async with http.post(
        f"{emulator.url}/v1/realtime",
        data=OFFER_WITH_AUDIO_LINE,
        headers={**auth_headers(), "Content-Type": "application/sdp"},
    ) as resp:
        assert resp.status == 201
        assert not (await resp.text()).startswith("v=0")


@pytest.mark.parametrize("knob", ["no_answer", "delay"])
async def test_sdp_that_never_comes_times_the_client_out(
    emulator: Emulator, http: aiohttp.ClientSession, knob: str
) -> None:
    if knob == "no_answer":
        emulator.faults.no_answer = True
    else:
        emulator.faults.delay["sdp"] = 30.0
    with pytest.raises(TimeoutError):
        async with http.post(
            f"{emulator.url}/v1/realtime",
            data=OFFER_WITH_AUDIO_LINE,
            headers={**auth_headers(), "Content-Type": "application/sdp"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    # The fixture's stop() must still end the waiting handler promptly.


# -- Faults and CORS -------------------------------------------------------------


async def test_fault_status_knobs(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.faults.status["sessions"] = 503
    emulator.faults.body["sessions"] = {
        "message": "Down for maintenance",
        "hint": "Later",
    }
    async with http.post(
        f"{emulator.url}/v1/realtime/sessions", json={}, headers=auth_headers()
    ) as resp:
        assert resp.status == 503
        assert await resp.json() == {"message": "Down for maintenance", "hint": "Later"}

    emulator.faults.status["sessions"] = 429
    emulator.faults.retry_after = 7
    async with http.post(
        f"{emulator.url}/v1/realtime/sessions", json={}, headers=auth_headers()
    ) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"

    emulator.faults.status["voices"] = 500
    async with http.get(
        f"{emulator.url}/v1/app/voices", headers=auth_headers()
    ) as resp:
        assert resp.status == 500
        assert "code" in (await resp.json())["detail"]

    emulator.faults.status.clear()
    assert (await create_session(http, emulator.url, auth_headers())).status == 200
    assert [
        status for _, path, status in emulator.requests if path.endswith("sessions")
    ] == [
        503,
        429,
        200,
    ]


async def test_cors_preflight_and_headers_on_errors(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.options(
        f"{emulator.url}/v1/realtime/sessions",
        headers={
            "Origin": "http://localhost:8123",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-client-secret",
        },
    ) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        allowed = {
            h.strip().lower()
            for h in resp.headers["Access-Control-Allow-Headers"].split(",")
        }
        methods = resp.headers["Access-Control-Allow-Methods"]
    assert {
        "content-type",
        "x-workspace-key",
        "x-client-id",
        "x-client-secret",
        "x-assistant-id",
        "x-app-source",
    } <= allowed
    assert {"GET", "POST", "OPTIONS"} <= {m.strip() for m in methods.split(",")}

    async with http.post(f"{emulator.url}/v1/realtime/sessions", json={}) as resp:
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


# -- REST API --------------------------------------------------------------------


async def test_voices(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.get(
        f"{emulator.url}/v1/app/voices", headers=auth_headers()
    ) as resp:
        assert resp.status == 200
        voices = (await resp.json())["voices"]
    assert {"voice_id": "v_alloy", "name": "Alloy", "category": "workspace"} in voices
    async with http.get(
        f"{emulator.url}/v1/app/voices", headers=auth_headers(workspace_key="nope")
    ) as resp:
        assert resp.status == 401
        assert (await resp.json())["detail"]["code"]


def wav_rms(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getsampwidth() == 2
        samples = array("h", wav.readframes(wav.getnframes()))
    assert len(samples) > 0
    return math.sqrt(math.sumprod(samples, samples) / len(samples))


async def test_tts_url_serves_speech_until_it_expires(
    socket_enabled: None, http: aiohttp.ClientSession
) -> None:
    async with own_emulator(workspace_key=WORKSPACE_KEY, tts_url_ttl=1.0) as emu:
        tts = f"{emu.url}/v1/app/text-to-speech/v_alloy/with-timestamps"
        async with http.post(
            tts, json={"text": "The garage door is open."}, headers=auth_headers()
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["expires_in"] == 1
        assert body["alignment"]["characters"][0] == "T"
        audio_url = body["audio_url"]
        assert audio_url.startswith(f"{emu.url}/v1/app/audio/")

        async with http.get(audio_url) as resp:
            assert resp.status == 200
            assert resp.content_type == "audio/wav"
            assert wav_rms(await resp.read()) > RMS_THRESHOLD

        async with http.get(audio_url.replace("sig=", "sig=0")) as resp:
            assert resp.status == 403

        await asyncio.sleep(1.1)
        async with http.get(audio_url) as resp:
            assert resp.status == 403
            assert (await resp.json())["detail"]["code"] == "URL_EXPIRED"

        async with http.post(
            tts, json={"text": "x" * 15001}, headers=auth_headers()
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["detail"]["code"] == "TEXT_TOO_LONG"
        async with http.post(
            f"{emu.url}/v1/app/text-to-speech/v_nobody/with-timestamps",
            json={"text": "hi"},
            headers=auth_headers(),
        ) as resp:
            assert resp.status == 404


# -- Standalone ------------------------------------------------------------------


async def test_standalone_prints_url_serves_and_stops_on_sigterm(
    socket_enabled: None, http: aiohttp.ClientSession
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workspace-key",
        "wk-standalone",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.fullmatch(
            r"ItanniX emulator listening on (http://127\.0\.0\.1:\d+)\n", line
        )
        assert match, line
        assert "wk-standalone" in (await proc.stdout.readline()).decode()
        resp = await create_session(
            http, match[1], auth_headers(workspace_key="wk-standalone")
        )
        assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- A minimal realtime round trip -------------------------------------------------


class Client:
    """A bare aiortc client: microphone track, "messages" channel, drained speaker."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = SpeakerTrack()  # a paced PCM track serves as the microphone
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("messages", ordered=True)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.loud_frames = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.channel.on("message", lambda m: self.events.put_nowait(json.loads(m)))
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._drain(track)))

    async def _drain(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if frame_rms(frame) > RMS_THRESHOLD:
                self.loud_frames += 1

    async def connect(self, http: aiohttp.ClientSession, url: str) -> None:
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        await create_session(http, url, auth_headers())
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(
            f"{url}/v1/realtime",
            data=self.pc.localDescription.sdp,
            headers={**auth_headers(), "Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201
            answer = await resp.text()
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(opened.wait(), 10)

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def until(
        self, event_type: str, seen: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(self.events.get(), 20)
            if seen is not None:
                seen.append(event)
            if event["type"] == event_type:
                return event

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    client = Client()
    try:
        yield client
    finally:
        await client.close()


async def test_text_turn_with_function_call_round_trip(
    emulator: Emulator, http: aiohttp.ClientSession, client: Client
) -> None:
    emulator.assistant().add_turn(
        Turn(
            user_text="Is the kitchen light on?",
            reply="Let me check.",
            function_calls=[
                FunctionCallSpec("light_state", '{"room":"kitchen"}', "call_1")
            ],
            reply_after_tools="The light is {light_state}.",
        )
    )
    await client.connect(http, emulator.url)
    await client.until("session.created")
    client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Is the kitchen light on?"}],
            },
        }
    )
    client.send({"type": "response.create", "response": {"modalities": ["text"]}})
    seen: list[dict[str, Any]] = []
    done = await client.until("response.done", seen)
    text = "".join(e["delta"] for e in seen if e["type"] == "response.text.delta")
    assert text == "Let me check."
    call = done["response"]["output"][-1]
    assert (call["type"], call["name"], call["call_id"]) == (
        "function_call",
        "light_state",
        "call_1",
    )
    assert json.loads(call["arguments"]) == {"room": "kitchen"}
    args_done = next(
        e for e in seen if e["type"] == "response.function_call_arguments.done"
    )
    assert "name" not in args_done  # the beta form

    # A response before the output arrives is an error, not a guess.
    client.send({"type": "response.create", "response": {"modalities": ["text"]}})
    assert (await client.until("error"))["error"][
        "code"
    ] == "missing_function_call_output"

    client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": "call_1",
                "output": "off",
            },
        }
    )
    client.send({"type": "response.create", "response": {"modalities": ["text"]}})
    seen.clear()
    done = await client.until("response.done", seen)
    assert done["response"]["status"] == "completed"
    assert done["response"]["usage"]["total_tokens"] > 0
    assert next(e for e in seen if e["type"] == "response.text.done")["text"] == (
        "The light is off."
    )
    assert emulator.sessions[-1].function_outputs == {"call_1": "off"}

    client.send({"type": "no.such.event"})
    assert (await client.until("error"))["error"]["type"] == "invalid_request_error"


async def test_spoken_turn_round_trip(
    emulator: Emulator, http: aiohttp.ClientSession, client: Client
) -> None:
    emulator.assistant().add_turn(
        Turn(transcript="turn on the kitchen light", reply="Sure, turning it on.")
    )
    await client.connect(http, emulator.url)
    client.send(
        {
            "type": "session.update",
            "session": {
                "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"}
            },
        }
    )
    await client.until("session.updated")
    assert emulator.sessions[-1].input_transcription_enabled

    client.mic.play(await Synthesizer().synthesize("Turn on the kitchen light."))
    await client.until("input_audio_buffer.speech_started")
    seen: list[dict[str, Any]] = []
    done = await client.until("response.done", seen)
    assert done["response"]["status"] == "completed"
    types = [e["type"] for e in seen]
    # Generation outpaces playback: the response is done while its voice still plays.
    assert types.index("output_audio_buffer.started") < types.index(
        "response.audio_transcript.done"
    )
    assert "output_audio_buffer.stopped" not in types
    # The transcript comes from a separate model: by default after the response.
    after: list[dict[str, Any]] = []
    heard = await client.until(
        "conversation.item.input_audio_transcription.completed", after
    )
    assert heard["transcript"] == "turn on the kitchen light"
    if "output_audio_buffer.stopped" not in [e["type"] for e in after]:
        await client.until("output_audio_buffer.stopped")
    transcript = "".join(
        e["delta"] for e in seen if e["type"] == "response.audio_transcript.delta"
    )
    assert transcript == "Sure, turning it on."
    # The reply was really spoken on the track, and the user's speech really heard.
    assert client.loud_frames > 10
    session = emulator.sessions[-1]
    assert session.speech_started_count == 1
    assert session.inbound_peak_rms > RMS_THRESHOLD
    assert session.inbound_voiced_ms >= 300

    await client.pc.close()
    async with asyncio.timeout(10):
        while not session.closed:
            await asyncio.sleep(0.05)


async def test_cancel_and_clear_cut_a_spoken_reply(
    emulator: Emulator, http: aiohttp.ClientSession, client: Client
) -> None:
    emulator.assistant().add_turn(Turn(reply=" ".join(["This is a long answer."] * 20)))
    await client.connect(http, emulator.url)
    client.send({"type": "response.create"})
    await client.until("output_audio_buffer.started")
    client.send({"type": "response.cancel"})
    done = await client.until("response.done")
    assert done["response"]["status"] == "cancelled"
    client.send({"type": "output_audio_buffer.clear"})
    await client.until("output_audio_buffer.cleared")
    # The reply lasts over 20 s; once the frames already in flight are through,
    # only silence follows the clear.
    await asyncio.sleep(0.5)
    loud = client.loud_frames
    await asyncio.sleep(0.5)
    assert client.loud_frames == loud


async def test_dropped_channel_fault(
    emulator: Emulator, http: aiohttp.ClientSession, client: Client
) -> None:
    emulator.faults.drop_channel_mid_reply = True
    closed = asyncio.Event()
    client.channel.on("close", closed.set)
    await client.connect(http, emulator.url)
    client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        }
    )
    client.send({"type": "response.create", "response": {"modalities": ["text"]}})
    seen: list[dict[str, Any]] = []
    await client.until("response.text.delta", seen)
    await asyncio.wait_for(closed.wait(), 10)
    assert not emulator.sessions[-1].closed  # the channel went, the peer stays


async def test_ga_event_names(
    socket_enabled: None, http: aiohttp.ClientSession
) -> None:
    async with own_emulator(workspace_key=WORKSPACE_KEY, ga_names=True) as emu:
        emu.assistant().add_turn(
            Turn(reply="On it.", function_calls=[FunctionCallSpec("light_on", "{}")])
        )
        client = Client()
        try:
            await client.connect(http, emu.url)
            client.send(
                {"type": "response.create", "response": {"modalities": ["text"]}}
            )
            seen: list[dict[str, Any]] = []
            await client.until("response.done", seen)
        finally:
            await client.close()
    types = {e["type"] for e in seen}
    assert {"response.output_text.delta", "response.output_text.done"} <= types
    assert "response.text.delta" not in types
    args_done = next(
        e for e in seen if e["type"] == "response.function_call_arguments.done"
    )
    assert args_done["name"] == "light_on"


async def test_peer_closed_after_open_fault(
    emulator: Emulator, http: aiohttp.ClientSession, client: Client
) -> None:
    emulator.faults.close_peer_after_open = True
    gone = asyncio.Event()
    client.pc.on(
        "connectionstatechange",
        lambda: client.pc.connectionState in {"closed", "failed"} and gone.set(),
    )
    await client.connect(http, emulator.url)
    await asyncio.wait_for(gone.wait(), 10)
    assert emulator.sessions[-1].closed
