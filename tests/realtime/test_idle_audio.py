"""Between turns the service's silence is counted, not decoded; a listener hears again."""

from __future__ import annotations

import asyncio
from typing import Any

from custom_components.itannix.realtime import ItanniXClient, RealtimeConnection
from tests.emulator import Emulator


async def _inbound(connection: RealtimeConnection) -> dict[str, Any]:
    pc = connection.peer_connection
    assert pc is not None
    report = await pc.getStats()
    return next(s.__dict__ for s in report.values() if s.type == "inbound-rtp")


async def test_idle_audio_is_not_decoded_and_rtcp_counts_no_loss(
    emulator: Emulator, client: ItanniXClient
) -> None:
    async with RealtimeConnection(client) as connection:
        speaker = connection.speaker
        # The service sends audio (silence) all along; nobody listens yet.
        async with asyncio.timeout(10):
            while not speaker.running:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        decoded, before = speaker.frames_received, await _inbound(connection)
        await asyncio.sleep(0.5)
        # Nothing decoded, yet every packet is counted: RTCP reports no false loss.
        assert speaker.frames_received == decoded
        idle = await _inbound(connection)
        assert idle["packetsReceived"] - before["packetsReceived"] >= 10
        subscription = speaker.subscribe()
        try:
            async with asyncio.timeout(10):
                async for _chunk in subscription:
                    if subscription.chunks_received >= 10:
                        break
        finally:
            subscription.close()
        listened = await _inbound(connection)
        assert speaker.frames_received - decoded >= 10
        assert listened["packetsLost"] == 0
        # The last listener gone, decoding stops again.
        await asyncio.sleep(0.1)
        decoded = speaker.frames_received
        await asyncio.sleep(0.3)
        assert speaker.frames_received == decoded
