"""A hostile ItanniX look-alike: speaks the protocol, and sends what the service would not.

The emulator is a faithful stand-in for the service; this one is the network and the
service at their worst: redirects, error bodies that echo credentials, garbage headers,
unusable or silent ICE servers, malformed and invalid-UTF-8 messages, absurd nesting,
and a network that vanishes. It answers typed turns minimally (``response.create`` gets
a short text reply), so a test can show that the session survived.

Every request it gets is recorded with its headers, secrets included: a test uses a
second instance as the place a redirect points to, and checks that nothing arrived.
"""

from __future__ import annotations

from array import array
import asyncio
from dataclasses import dataclass, field
import json
import math
import secrets
from typing import Any

from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack
import av

from tests.emulator.loopback import restrict_ice_to_loopback
from tests.network import NetworkProfile, UdpRelay, relay_answer

# Payload protocol identifiers of data channel messages (RFC 8831, RFC 8832).
WEBRTC_DCEP = 50
_WEBRTC_STRING = 51
# Data channel control messages (RFC 8832): open a channel, acknowledge an open.
DCEP_OPEN = 0x03
DCEP_ACK = 0x02


class ToneTrack(AudioStreamTrack):
    """A voice that never goes quiet: a 400 Hz tone, 20 ms frames for ever."""

    # 20 ms at 8 kHz: 160 samples, 8 whole periods of 400 Hz (seamless frames).
    _PCM = array(
        "h", (round(6000 * math.sin(2 * math.pi * i / 20)) for i in range(160))
    )

    async def recv(self) -> av.AudioFrame:
        """Aiortc's paced silence, filled with the tone."""
        frame = await super().recv()
        assert isinstance(frame, av.AudioFrame)
        plane = frame.planes[0]
        plane.update(self._PCM.tobytes().ljust(plane.buffer_size, b"\0"))
        return frame


@dataclass
class Recorded:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Answer:
    """What an endpoint answers instead of doing its job."""

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class HostileSession:
    """The far end of one realtime connection."""

    def __init__(
        self,
        relays: list[UdpRelay],
        created: dict[str, Any] | None = None,
        created_delay: float = 0.0,
    ) -> None:
        """Created by ``HostilePeer`` for each SDP offer.

        ``created``: the ``session`` of the ``session.created`` sent ``created_delay``
        seconds after the channel opens (None: never sent).
        """
        self._created = created
        self._created_delay = created_delay
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.relays = relays
        self.channel: RTCDataChannel | None = None
        self.opened = asyncio.Event()
        self.received: list[dict[str, Any]] = []
        self.replies = 0
        # Whether response.create gets the minimal reply (a test may answer itself).
        self.answer_turns = True
        self.pc.on("datachannel", self._on_datachannel)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        self.opened.set()
        if self._created is not None:
            # Like the service, the first event describes the session.
            asyncio.get_running_loop().call_later(
                self._created_delay, self._send_created
            )

    def _send_created(self) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.send_event({"type": "session.created", "session": self._created})

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        self.received.append(event)
        if event.get("type") == "response.create" and self.answer_turns:
            self._reply()

    def _reply(self) -> None:
        """A minimal, well-formed text response."""
        self.replies += 1
        rid = f"resp_{secrets.token_hex(4)}"
        self.send_event({"type": "response.created", "response": {"id": rid}})
        self.send_event(
            {
                "type": "response.text.delta",
                "response_id": rid,
                "item_id": f"item_{rid}",
                "delta": f"pong {self.replies}",
            }
        )
        self.send_event(
            {"type": "response.done", "response": {"id": rid, "status": "completed"}}
        )

    def send_event(self, event: dict[str, Any]) -> None:
        """Send a well-formed server event."""
        self.send_text(json.dumps(event))

    def send_text(self, text: str) -> None:
        """Send any text message."""
        assert self.channel is not None
        self.channel.send(text)

    async def drain(self, below: int = 1 << 16) -> None:
        """Wait until what was sent is mostly on the wire.

        aiortc's SCTP slows down badly with thousands of messages queued at once;
        a flood is sent in batches with this between them.
        """
        assert self.channel is not None
        await asyncio.sleep(0.005)  # let the transport send
        while self.channel.bufferedAmount > below:
            await asyncio.sleep(0.005)

    def send_raw_text(self, data: bytes) -> None:
        """Send bytes labelled as a text message: aiortc's send() would encode them."""
        self.send_raw(_WEBRTC_STRING, data)

    def send_raw(self, pp_id: int, data: bytes, stream_id: int | None = None) -> None:
        """Send any SCTP message: any payload protocol, on any stream.

        ``stream_id`` None: the data channel's own stream. With ``WEBRTC_DCEP`` this
        sends data channel control messages no well-behaved peer would.
        """
        assert self.channel is not None
        assert self.channel.id is not None
        sctp = self.pc.sctp
        assert sctp is not None
        stream = self.channel.id if stream_id is None else stream_id
        task = asyncio.ensure_future(sctp._send(stream, pp_id, data))
        task.add_done_callback(lambda t: t.exception())

    def cut_network(self) -> None:
        """The network between us vanishes; neither side is told."""
        for relay in self.relays:
            relay.cut()

    async def close(self) -> None:
        """Close the peer and its relays."""
        await self.pc.close()
        for relay in self.relays:
            relay.close()


class HostilePeer:
    """The HTTP endpoints of the service, with whatever a test tells them to answer."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """Configure; ``start()`` listens."""
        self.host = host
        self.ice_servers: list[dict[str, Any]] = []
        # Endpoint ("sessions", "sdp", "audio": /v1/app/audio/...) -> what to answer
        # instead. Any other path serves a few bytes of WAV.
        self.answers: dict[str, Answer] = {}
        self.network = NetworkProfile()
        # What each session's session.created says, and when (None: never sent).
        self.session_created: dict[str, Any] | None = {"tools": [], "instructions": ""}
        self.created_delay = 0.0
        # Whether each session sends a voice: a tone that never stops.
        self.loud_audio = False
        self.requests: list[Recorded] = []
        self.sessions: list[HostileSession] = []
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        assert self._url is not None, "not started"
        return self._url

    async def start(self) -> None:
        """Listen on a free loopback port."""
        restrict_ice_to_loopback()
        app = web.Application()
        app.router.add_post("/v1/realtime/sessions", self._sessions)
        app.router.add_post("/v1/realtime", self._sdp)
        app.router.add_route("*", "/{tail:.*}", self._anything)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://{self.host}:{port}"

    async def stop(self) -> None:
        """Close every peer and stop listening."""
        await asyncio.gather(*(session.close() for session in self.sessions))
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> HostilePeer:
        """Start."""
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Stop."""
        await self.stop()

    async def wait_session(self, timeout: float = 10.0) -> HostileSession:
        """The newest session, once its data channel is open."""
        async with asyncio.timeout(timeout):
            while not self.sessions:
                await asyncio.sleep(0.01)
            session = self.sessions[-1]
            await session.opened.wait()
        return session

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers))
        )

    @staticmethod
    def _answer(answer: Answer) -> web.Response:
        # Bytes: the headers may claim a charset that does not exist.
        return web.Response(
            status=answer.status, body=answer.body.encode(), headers=answer.headers
        )

    async def _sessions(self, request: web.Request) -> web.Response:
        self._record(request)
        if (answer := self.answers.get("sessions")) is not None:
            return self._answer(answer)
        return web.json_response(
            {"id": f"sess_{secrets.token_hex(4)}", "iceServers": self.ice_servers}
        )

    async def _sdp(self, request: web.Request) -> web.Response:
        self._record(request)
        if (answer := self.answers.get("sdp")) is not None:
            return self._answer(answer)
        offer = await request.text()
        session = HostileSession([], self.session_created, self.created_delay)
        self.sessions.append(session)
        pc = session.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                if self.loud_audio:
                    transceiver.direction = "sendrecv"
                    transceiver.sender.replaceTrack(ToneTrack())
                else:
                    transceiver.sender.replaceTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        sdp, session.relays = await relay_answer(pc.localDescription.sdp, self.network)
        return web.Response(status=201, text=sdp, content_type="application/sdp")

    async def _anything(self, request: web.Request) -> web.Response:
        self._record(request)
        answer = self.answers.get("audio")
        if answer is not None and request.path.startswith("/v1/app/audio/"):
            return self._answer(answer)
        return web.Response(
            status=200, body=b"RIFF....WAVEfmt ", content_type="audio/wav"
        )
