"""Bare aiortc pieces for the baselines: a paced tone track, a drain, plain peers."""

from __future__ import annotations

from array import array
import asyncio
import fractions
import math
from typing import Final

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
import av

RATE: Final = 48_000
FRAME_SAMPLES: Final = 960  # 20 ms
_TIME_BASE: Final = fractions.Fraction(1, RATE)
CHANNEL_LABEL: Final = "messages"


def tone_pcm(
    rate: int, seconds: float, hz: float = 440.0, amplitude: int = 8000
) -> bytes:
    """Return s16 mono PCM of a sine; whole cycles per second, so it loops seamlessly."""
    step = 2 * math.pi * hz / rate
    samples = array(
        "h", (int(amplitude * math.sin(step * i)) for i in range(int(rate * seconds)))
    )
    return samples.tobytes()


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames paced to the wall clock, as a real source is.

    aiortc pulls as fast as ``recv()`` returns, so the track sleeps to its schedule.
    """

    kind = "audio"

    def __init__(self) -> None:
        """Precompute one second of tone (440 whole cycles) and loop it."""
        super().__init__()
        pcm = tone_pcm(RATE, 1.0)
        size = FRAME_SAMPLES * 2
        self._frames = [pcm[i : i + size] for i in range(0, len(pcm), size)]
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0

    async def recv(self) -> av.AudioFrame:
        """Return the next frame at its wall-clock time."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._pts / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(self._frames[self.frames_sent % len(self._frames)])
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += FRAME_SAMPLES
        self.frames_sent += 1
        return frame


class Drain:
    """Reads a remote track as fast as frames arrive (aiortc queues them unbounded)."""

    def __init__(self) -> None:
        """Start with nothing to drain."""
        self.frames = 0
        self.flowing = asyncio.Event()  # set by the first frame
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, track: MediaStreamTrack) -> None:
        """Drain ``track`` until it ends or ``stop()``."""
        if track.kind != "audio":
            return
        task = asyncio.get_running_loop().create_task(self._run(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames += 1
                self.flowing.set()
        except MediaStreamError:
            return

    async def stop(self) -> None:
        """Cancel the drains and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BarePeer:
    """One plain aiortc peer: a tone track, the data channel, and a drained remote track.

    The same shape as our connection (audio both ways plus an ordered data channel),
    without anything of ours on top.
    """

    def __init__(self) -> None:
        """Create the peer; host candidates only (no STUN: nothing leaves loopback)."""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tone = ToneTrack()
        self.drain = Drain()
        self.channel: RTCDataChannel | None = None
        self._open = asyncio.Event()
        self.pc.on("track", self.drain.start)

    async def offer(self) -> str:
        """Add the track and the channel; return the complete (non-trickle) offer."""
        self.pc.addTrack(self.tone)
        self.channel = self.pc.createDataChannel(CHANNEL_LABEL, ordered=True)
        self.channel.on("open", self._open.set)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, offer_sdp: str) -> str:
        """Answer an offer with a tone track of our own; return the answer SDP."""
        self.pc.on("datachannel", self._on_datachannel)
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=offer_sdp, type="offer")
        )
        self.pc.addTrack(self.tone)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        """Apply the answer to our offer."""
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer_sdp, type="answer")
        )

    async def wait_open(self) -> None:
        """Wait until the data channel is open (bound it with a timeout)."""
        await self._open.wait()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self._open.set()

    async def close(self) -> None:
        """Close the peer and its drains."""
        self.tone.stop()
        await self.drain.stop()
        await self.pc.close()


async def post_offer(http: aiohttp.ClientSession, answerer_url: str, offer: str) -> str:
    """Send an SDP offer to the bare answerer (``benchmarks/answerer.py``); its answer."""
    async with http.post(
        f"{answerer_url}/offer",
        data=offer,
        headers={"Content-Type": "application/sdp"},
    ) as resp:
        resp.raise_for_status()
        return await resp.text()
