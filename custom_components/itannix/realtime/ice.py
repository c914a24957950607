"""Turn the service's ICE server list into a configuration aiortc can use."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from aiortc import RTCConfiguration, RTCIceServer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .client import IceServer

# The grammar aiortc accepts (RFC 7064 / RFC 7065), so nothing we keep fails there later.
_STUN_RE: Final = re.compile(r"stun:(?P<host>[^?:]+)(:(?P<port>[0-9]+))?")
_TURN_RE: Final = re.compile(
    r"(?P<scheme>turns?):(?P<host>[^?:]+)(:(?P<port>[0-9]+))?"
    r"(\?transport=(?P<transport>[a-z]+))?"
)


def _turn_rank(url: str) -> int | None:
    """Rank a TURN URL, lower is better; None when aiortc cannot use it.

    Plain TURN over UDP is cheapest and lowest latency, then TURN over TCP, then TURN
    over TLS for networks that only let TLS through.
    """
    match = _TURN_RE.fullmatch(url)
    if match is None:
        return None
    scheme = match["scheme"]
    transport = match["transport"] or ("udp" if scheme == "turn" else "tcp")
    if scheme == "turn":
        return {"udp": 0, "tcp": 1}.get(transport)
    return 2 if transport == "tcp" else None


def sanitize_ice_servers(servers: Iterable[IceServer]) -> list[RTCIceServer]:
    """Keep at most one STUN and one TURN server, the best usable ones.

    aiortc uses only one of each and silently skips the rest, and a malformed URL makes
    it fail the whole connection: choose here, deliberately.
    """
    stun: str | None = None
    turn: tuple[int, str, IceServer] | None = None
    for server in servers:
        for raw_url in server.urls:
            url = raw_url.strip()
            if url.startswith("stun:"):
                if stun is None and _STUN_RE.fullmatch(url):
                    stun = url
                continue
            rank = _turn_rank(url)
            if rank is None or not server.username or not server.credential:
                # TURN without credentials cannot allocate a relay.
                continue
            if turn is None or rank < turn[0]:
                turn = (rank, url, server)
    result: list[RTCIceServer] = []
    if stun is not None:
        result.append(RTCIceServer(urls=[stun]))
    if turn is not None:
        _, url, server = turn
        result.append(
            RTCIceServer(
                urls=[url], username=server.username, credential=server.credential
            )
        )
    return result


def build_rtc_configuration(servers: Iterable[IceServer]) -> RTCConfiguration:
    """Return an explicit configuration: an empty list means host candidates only.

    Never leave iceServers unset: aiortc would then reach for a public STUN server.
    """
    return RTCConfiguration(iceServers=sanitize_ice_servers(servers))
