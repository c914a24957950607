"""The bare baseline's far end, in its own process: ``python -m benchmarks.answerer``.

Answers an SDP offer (POST /offer) with a plain aiortc peer that sends a tone back and
drains what it receives, so the benchmark's own process holds only the client side.
Prints ``bare answerer listening on http://127.0.0.1:PORT`` and serves until SIGTERM.
``--network PROFILE`` puts the emulator's network in front of it: its media through a
``UdpRelay``, its HTTP answers one round trip late (``tests/network.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from tests.emulator.loopback import restrict_ice_to_loopback
from tests.network import NetworkProfile, UdpRelay, http_network, relay_answer

from .bare import BarePeer


class _Peers:
    """The live peers, and the closing of those whose client hung up."""

    def __init__(self, network: NetworkProfile | None) -> None:
        self.network = network
        self.live: set[BarePeer] = set()
        self.relays: dict[BarePeer, list[UdpRelay]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def hang_up(self, peer: BarePeer) -> None:
        if peer not in self.live:
            return
        self.live.discard(peer)
        for relay in self.relays.pop(peer, []):
            relay.close()
        task = asyncio.get_running_loop().create_task(peer.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        for peer in list(self.live):
            self.hang_up(peer)
        await asyncio.gather(*self._closing, return_exceptions=True)


_PEERS: web.AppKey[_Peers] = web.AppKey("peers", _Peers)


async def _relayed(peers: _Peers, peer: BarePeer, answer: str) -> str:
    if peers.network is None:
        return answer
    answer, peers.relays[peer] = await relay_answer(answer, peers.network)
    return answer


async def _offer(request: web.Request) -> web.Response:
    peers = request.app[_PEERS]
    peer = BarePeer()
    peers.live.add(peer)

    def on_state() -> None:
        if peer.pc.connectionState in ("failed", "closed"):
            peers.hang_up(peer)

    peer.pc.on("connectionstatechange", on_state)
    # The client closing its channel ends the call, as it does with the emulator.
    peer.pc.on(
        "datachannel", lambda channel: channel.on("close", lambda: peers.hang_up(peer))
    )
    try:
        answer = await _relayed(peers, peer, await peer.answer(await request.text()))
    except Exception as err:
        peers.hang_up(peer)
        raise web.HTTPBadRequest(text=f"bad offer: {type(err).__name__}") from err
    return web.Response(status=201, text=answer, content_type="application/sdp")


async def _serve(host: str, port: int, network: NetworkProfile | None) -> None:
    restrict_ice_to_loopback()
    app = web.Application(middlewares=[http_network(lambda: network)])
    app[_PEERS] = _Peers(network)
    app.router.add_post("/offer", _offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"bare answerer listening on http://{host}:{bound}", flush=True)  # noqa: T201
        await stop.wait()
    finally:
        await app[_PEERS].close_all()
        await runner.cleanup()


def main() -> None:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answerer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--network",
        type=NetworkProfile.parse,
        help="e.g. rtt=80ms,jitter=10ms,loss=1%%",
    )
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.network))


if __name__ == "__main__":
    main()
