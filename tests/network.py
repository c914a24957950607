"""A network between the client and a far end on loopback: delay, jitter, loss, outage.

This kernel has no netem, so the far end's media path goes through ``UdpRelay``: its
answer SDP advertises the relay's port instead of its own ICE socket's, the relay
forwards every datagram (ICE, DTLS, SCTP, RTP) both ways and applies a
``NetworkProfile``. ``cut()`` makes the network vanish, as a lost Wi-Fi or a dead
router does: nothing passes either way, and neither side is told. ``http_network`` is
the same profile for an aiohttp server's answers (delay only: TCP loses nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import random
import re
import socket
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

# As aioice sizes its own sockets: a burst must not overflow a loopback buffer.
_SOCKET_BUFFER = 1 << 20

_DURATION_RE = re.compile(r"(?P<value>[0-9.]+)\s*(?P<unit>ms|s)?")


def _seconds(text: str) -> float:
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    value = float(match["value"])
    return value / 1000 if match["unit"] in (None, "ms") else value


@dataclass(frozen=True)
class NetworkProfile:
    """What the network does to each datagram (and HTTP answer) one way.

    ``rtt`` is the round trip: each direction is delayed by half of it, plus a uniform
    jitter of up to ``jitter``; ``loss`` is the share of datagrams dropped each way.
    """

    rtt: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> NetworkProfile:
        """Parse ``rtt=80ms,jitter=10ms,loss=1%`` (any subset, any order)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, raw = part.partition("=")
            key = key.strip()
            if key in ("rtt", "jitter"):
                values[key] = _seconds(raw)
            elif key == "loss":
                raw = raw.strip()
                values[key] = float(raw.removesuffix("%")) / (
                    100 if raw.endswith("%") else 1
                )
            else:
                raise ValueError(f"unknown network setting {key!r}")
        if not 0 <= values.get("loss", 0) < 1:
            raise ValueError("loss must be between 0 and 100%")
        return cls(**values)

    @property
    def is_perfect(self) -> bool:
        """No delay, jitter or loss."""
        return not (self.rtt or self.jitter or self.loss)

    def one_way_delay(self, rng: random.Random) -> float:
        """Seconds one datagram takes one way."""
        return self.rtt / 2 + (rng.uniform(0, self.jitter) if self.jitter else 0.0)

    def __str__(self) -> str:
        """The profile as ``parse`` reads it."""
        return (
            f"rtt={self.rtt * 1000:g}ms,jitter={self.jitter * 1000:g}ms,"
            f"loss={self.loss * 100:g}%"
        )


type _Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_network(
    profile: Callable[[], NetworkProfile | None],
    *,
    exempt: Callable[[web.Request], bool] = lambda _request: False,
    rng: random.Random | None = None,
) -> Any:
    """An aiohttp middleware: every answer pays one round trip of ``profile()``.

    The request waits half a round trip (plus jitter) before it is handled and the
    answer as long again before it leaves. TCP loses nothing, so ``loss`` only shows as
    delay and is not applied; a kept-alive connection is assumed (no handshake).
    ``profile`` is read per request (None: straight loopback). Every answer says how
    long its handler took, network excluded, in ``Server-Timing: app;dur=MS``, so a
    client can tell the far end's time from its own and the network's.
    """
    rand = rng or random.Random()

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        network = None if exempt(request) else profile()
        if network is not None:
            await asyncio.sleep(network.one_way_delay(rand))
        start = time.perf_counter()
        response = await handler(request)
        if not response.prepared:
            response.headers["Server-Timing"] = (
                f"app;dur={1000 * (time.perf_counter() - start):.2f}"
            )
        if network is not None:
            await asyncio.sleep(network.one_way_delay(rand))
        return response

    return middleware


def server_time_ms(headers: Any) -> float:
    """The far end's handling time in an answer's ``Server-Timing`` (0 without it)."""
    match = re.search(r"\bapp;dur=([0-9.]+)", headers.get("Server-Timing", ""))
    return float(match[1]) if match else 0.0


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._on_datagram = on_datagram

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data, addr)


class UdpRelay:
    """Forwards one far-end UDP socket's traffic through a lossy, slow, cuttable link.

    The client talks to ``port`` (the advertised candidate); the far end sees the
    relay's inner socket as the client (a peer-reflexive candidate in ICE terms).
    """

    def __init__(
        self, target: tuple[str, int], profile: NetworkProfile | None = None
    ) -> None:
        """Relay to ``target`` (the far end's own ICE socket)."""
        self.target = target
        self.profile = profile or NetworkProfile()
        self.cut_off = False
        self.forwarded = 0
        self.dropped = 0
        self._rng = random.Random(self.profile.seed)
        self._client: tuple[str, int] | None = None
        self._outer: _Endpoint | None = None
        self._inner: _Endpoint | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def port(self) -> int:
        """The port the client should send to."""
        assert self._outer is not None
        assert self._outer.transport is not None
        port: int = self._outer.transport.get_extra_info("sockname")[1]
        return port

    async def start(self, host: str = "127.0.0.1") -> None:
        """Open the relay's two sockets."""
        loop = asyncio.get_running_loop()
        _, self._outer = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_client), local_addr=(host, 0)
        )
        _, self._inner = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_far_end), local_addr=(host, 0)
        )

    def cut(self) -> None:
        """The network vanishes: from now on nothing passes, and nobody is told."""
        self.cut_off = True

    def restore(self) -> None:
        """The network is back."""
        self.cut_off = False

    def close(self) -> None:
        """Close both sockets and forget what is in flight."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        for endpoint in (self._outer, self._inner):
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client = addr
        self._pass(self._inner, data, self.target)

    def _from_far_end(self, data: bytes, _addr: tuple[str, int]) -> None:
        if self._client is not None:
            self._pass(self._outer, data, self._client)

    def _pass(
        self, via: _Endpoint | None, data: bytes, destination: tuple[str, int]
    ) -> None:
        if via is None or via.transport is None or via.transport.is_closing():
            return
        if self.cut_off or (
            self.profile.loss and self._rng.random() < self.profile.loss
        ):
            self.dropped += 1
            return
        self.forwarded += 1
        delay = self.profile.one_way_delay(self._rng)
        transport = via.transport
        if delay <= 0:
            transport.sendto(data, destination)
            return
        loop = asyncio.get_running_loop()

        def send() -> None:
            self._pending.discard(handle)
            if not transport.is_closing():
                transport.sendto(data, destination)

        handle = loop.call_later(delay, send)
        self._pending.add(handle)


_CANDIDATE_RE = re.compile(
    r"^(a=candidate:\S+ \d+ udp \d+ )(?P<host>\S+) (?P<port>\d+)( typ host.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def without_candidates(sdp: str) -> str:
    """The SDP without its ICE candidates (and end-of-candidates markers).

    Given to the far end as the client's offer, it cannot reach the client except by
    answering the checks that come through the relay: every datagram then takes it.
    """
    lines = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    ending = "\r\n" if "\r\n" in sdp else "\n"
    return ending.join(lines) + ending


async def relay_answer(
    sdp: str, profile: NetworkProfile | None = None
) -> tuple[str, list[UdpRelay]]:
    """Put a relay in front of every UDP host candidate of an SDP; return both.

    Other candidates are removed, so every path goes through a relay.
    """
    relays: dict[tuple[str, int], UdpRelay] = {}
    lines: list[str] = []
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            lines.append(line)
            continue
        match = _CANDIDATE_RE.match(line)
        if match is None:
            continue  # TCP or non-host: not relayed, not offered
        target = (match["host"], int(match["port"]))
        relay = relays.get(target)
        if relay is None:
            relay = relays[target] = UdpRelay(target, profile)
            await relay.start(target[0])
        lines.append(f"{match[1]}{match['host']} {relay.port}{match[4]}")
    ending = "\r\n" if "\r\n" in sdp else "\n"
    return ending.join(lines) + ending, list(relays.values())


class NoSuchNameResolver(AbstractResolver):
    """A resolver that knows no name, as a DNS server answering NXDOMAIN does.

    For an aiohttp connector: a lookup costs no network and fails as a typo does.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Fail, as for a name that does not exist."""
        raise OSError(socket.EAI_NONAME, "Domain name not found")

    async def close(self) -> None:
        """Nothing to close."""
