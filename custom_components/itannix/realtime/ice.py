"""Turn the service's ICE server list into a configuration aiortc can use.

Everything here guards set-up against what the service hands out: URLs aiortc or aioice
would fail on later (deep in the event loop, where every connect then times out), and
servers that never answer (aioice waits 5 s for each by default, on every set-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import ipaddress
import re
import time
from typing import TYPE_CHECKING, Final

from aiortc import RTCConfiguration, RTCIceServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .client import IceServer

# The grammar aiortc accepts (RFC 7064 / RFC 7065), so nothing we keep fails there later.
# aiortc's own grammar excludes ':' from the host: no IPv6 literals.
_STUN_RE: Final = re.compile(r"stun:(?P<host>[^?:]+)(:(?P<port>[0-9]{1,5}))?")
_TURN_RE: Final = re.compile(
    r"(?P<scheme>turns?):(?P<host>[^?:]+)(:(?P<port>[0-9]{1,5}))?"
    r"(\?transport=(?P<transport>[a-z]+))?"
)
_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# How long set-up waits for server-reflexive (STUN) and relay (TURN) candidates. Host
# candidates are there at once; a server that answers does so within a few round trips
# (a TURN allocation over TLS takes about four), one that does not is not waited for.
GATHER_TIMEOUT: Final = 2.0
# A server that gave no candidate is left out of the client's set-ups for this long.
UNRESPONSIVE_HOLD: Final = 600.0


@dataclass(frozen=True, slots=True)
class IceSelection:
    """The ICE servers to use, and the URLs left out with the reason."""

    servers: list[RTCIceServer]
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _valid_host(host: str) -> bool:
    """An IPv4 literal or a DNS name (aioice resolves STUN hosts as IPv4 only)."""
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or labels[-1].isdigit():
        return False  # "999.1.1.1" is neither an address nor a name
    return all(_LABEL_RE.fullmatch(label) for label in labels)


def _valid_port(port: str | None) -> bool:
    return port is None or 1 <= int(port) <= 65535


def _stun_problem(url: str) -> str | None:
    match = _STUN_RE.fullmatch(url)
    if match is None:
        return "not a stun: URL aiortc can use"
    if not _valid_host(match["host"]):
        return "invalid host"
    if not _valid_port(match["port"]):
        return "invalid port"
    return None


def _turn_rank(url: str) -> tuple[int | None, str | None]:
    """Rank a TURN URL, lower is better; (None, why) when aiortc cannot use it.

    Plain TURN over UDP is cheapest and lowest latency, then TURN over TCP, then TURN
    over TLS for networks that only let TLS through.
    """
    match = _TURN_RE.fullmatch(url)
    if match is None:
        return None, "not a turn: or turns: URL aiortc can use"
    if not _valid_host(match["host"]):
        return None, "invalid host"
    if not _valid_port(match["port"]):
        return None, "invalid port"
    scheme = match["scheme"]
    transport = match["transport"] or ("udp" if scheme == "turn" else "tcp")
    if scheme == "turn":
        rank = {"udp": 0, "tcp": 1}.get(transport)
    else:
        rank = 2 if transport == "tcp" else None
    return rank, None if rank is not None else f"unsupported transport {transport}"


def _server_rank(url: str, server: IceServer) -> tuple[int | None, str | None]:
    """A TURN URL's rank (lower is better), None for STUN; or why it is unusable."""
    if url.startswith("stun:"):
        return None, _stun_problem(url)
    rank, problem = _turn_rank(url)
    if rank is None:
        return None, problem or "unusable"
    if not server.username or not server.credential:
        # TURN without credentials cannot allocate a relay.
        return None, "no credentials"
    return rank, None


def select_ice_servers(servers: Iterable[IceServer]) -> IceSelection:
    """Keep at most one STUN and one TURN server, the best usable ones.

    aiortc uses only one of each and silently skips the rest, and a malformed URL makes
    it fail the whole connection: choose here, deliberately, and say what was dropped.
    """
    stun: str | None = None
    turn: tuple[int, str, IceServer] | None = None
    rejected: list[tuple[str, str]] = []
    for server in servers:
        for raw_url in server.urls:
            url = raw_url.strip()
            rank, problem = _server_rank(url, server)
            if problem is not None:
                rejected.append((url, problem))
            elif rank is None:
                stun = stun or url
            elif turn is None or rank < turn[0]:
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
    return IceSelection(result, rejected)


def sanitize_ice_servers(servers: Iterable[IceServer]) -> list[RTCIceServer]:
    """The ICE servers of ``select_ice_servers``, without the rejected list."""
    return select_ice_servers(servers).servers


def build_rtc_configuration(servers: Iterable[RTCIceServer]) -> RTCConfiguration:
    """Return an explicit configuration: an empty list means host candidates only.

    Never leave iceServers unset: aiortc would then reach for a public STUN server.
    """
    return RTCConfiguration(iceServers=list(servers))


class IceServerHealth:
    """Remembers STUN and TURN servers that did not answer, to leave them out a while.

    A server that gave no candidate within ``GATHER_TIMEOUT`` would cost every later
    set-up that wait again. It is left out for ``UNRESPONSIVE_HOLD``; a set-up that
    then fails to connect forgets everything, so the next one tries every server.
    """

    def __init__(
        self,
        hold: float = UNRESPONSIVE_HOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Initialize with nothing held."""
        self._hold = hold
        self._clock = clock
        self._held: dict[str, float] = {}

    def usable(self, servers: Iterable[RTCIceServer]) -> list[RTCIceServer]:
        """The servers not currently held."""
        now = self._clock()
        self._held = {url: until for url, until in self._held.items() if until > now}
        return [server for server in servers if _url(server) not in self._held]

    def record(self, servers: Iterable[RTCIceServer], types: set[str]) -> list[str]:
        """Note which servers produced no candidate; return their URLs."""
        silent = []
        for server in servers:
            url = _url(server)
            wanted = "srflx" if url.startswith("stun:") else "relay"
            if wanted not in types:
                self._held[url] = self._clock() + self._hold
                silent.append(url)
        return silent

    def reset(self) -> None:
        """Forget every held server (a set-up failed: maybe it needed one)."""
        self._held.clear()


def _url(server: RTCIceServer) -> str:
    urls = server.urls
    return urls if isinstance(urls, str) else urls[0]
