"""A spoken reply's voice ends when it stopped playing: never before, and never never.

Over real loopback WebRTC: the emulator's voice (espeak-ng) with and without the
service's ``output_audio_buffer.*`` events, and a hostile far end whose voice never goes
quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
import time
from typing import TYPE_CHECKING

import pytest

from custom_components.itannix.realtime import (
    AudioTurn,
    Credentials,
    ItanniXClient,
    RealtimeSession,
    voice_end,
)
from custom_components.itannix.realtime.audio import is_quiet
from tests.emulator import Emulator, Turn
from tests.emulator.voice import Synthesizer
from tests.hostile import HostilePeer

from .conftest import CLIENT_ID, CLIENT_SECRET

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp

REPLY = "Sure. The kitchen light is on now, and the oven is warming up."
# The previous client ended a voice without output_audio_buffer events this long after
# response.done, whatever still played.
OLD_DRAIN = 0.3


@dataclass
class Voice:
    """What ``reply_audio()`` gave, and when."""

    chunks: list[tuple[float, bytes]]  # (arrival, 20 ms of 16 kHz s16)
    done_at: float  # the turn's response.done
    ended_at: float  # reply_audio() ended

    @property
    def pcm(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)

    def voiced_ms(self, after: float = 0.0) -> int:
        return 20 * sum(not is_quiet(chunk) for at, chunk in self.chunks if at >= after)

    @property
    def last_voiced_at(self) -> float:
        return max(at for at, chunk in self.chunks if not is_quiet(chunk))


def voiced_ms(pcm: bytes) -> int:
    """Milliseconds of 16 kHz s16 audio that are not silence, in 20 ms windows."""
    return 20 * sum(
        not is_quiet(pcm[i : i + 640]) for i in range(0, len(pcm) - 639, 640)
    )


async def reference_voiced_ms(text: str) -> int:
    """How much of the emulator's voice for ``text`` is voiced (48 kHz taken to 16)."""
    pcm48 = await Synthesizer().synthesize(text)
    return voiced_ms(bytes(memoryview(pcm48).cast("h")[::3]))


async def collect(turn: AudioTurn, timeout: float = 30.0) -> Voice:
    """Play the turn's reply voice to its end (bounded), noting when things came."""

    async def done_time() -> float:
        await turn.wait()
        return time.monotonic()

    done = asyncio.ensure_future(done_time())
    chunks: list[tuple[float, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            chunks.extend([(time.monotonic(), c) async for c in turn.reply_audio()])
            ended_at = time.monotonic()
            return Voice(chunks, await done, ended_at)
    finally:
        done.cancel()


async def spoken_reply(session: RealtimeSession, speech: bytes) -> Voice:
    turn = await session.start_audio_turn()
    turn.feed_audio(speech)
    session.connection.microphone.flush()
    return await collect(turn)


@pytest.fixture
async def session(client: ItanniXClient) -> AsyncIterator[RealtimeSession]:
    session = await RealtimeSession.open(client)
    try:
        yield session
    finally:
        await session.close()


async def test_a_voice_the_service_never_says_stopped_still_ends_whole(
    emulator: Emulator, session: RealtimeSession, speech_pcm16k: bytes
) -> None:
    """output_audio_buffer.started, then no stopped: the voice ends once it went quiet."""
    emulator.behaviour.output_audio_buffer_stopped = False
    emulator.assistant().add_turn(Turn(transcript="light", reply=REPLY))
    emulator.assistant().add_turn(Turn(transcript="again", reply="Done."))
    voice = await spoken_reply(session, speech_pcm16k)
    sent = [e["type"] for e in emulator.sessions[-1].sent_events]
    assert "output_audio_buffer.started" in sent
    assert "output_audio_buffer.stopped" not in sent
    # The whole reply, not cut at response.done...
    assert voice.voiced_ms() > 0.85 * await reference_voiced_ms(REPLY)
    assert voice.voiced_ms(after=voice.done_at + 1.0) > 500
    # ...and then it ended, a bounded while after it went quiet.
    quiet_for = voice.ended_at - voice.last_voiced_at
    assert quiet_for >= voice_end.LOST_SECONDS - 0.1
    assert quiet_for < voice_end.LOST_SECONDS + 1.0
    # The session is free for the next turn.
    assert session.current_turn is None
    assert (await spoken_reply(session, speech_pcm16k)).voiced_ms() > 200


async def test_without_output_audio_buffer_events_the_whole_voice_is_heard(
    emulator: Emulator, session: RealtimeSession, speech_pcm16k: bytes
) -> None:
    """No output_audio_buffer.* at all: as much voice as with them, not cut at done."""
    emulator.assistant().add_turn(Turn(transcript="light", reply=REPLY))
    emulator.assistant().add_turn(Turn(transcript="light", reply=REPLY))
    with_events = await spoken_reply(session, speech_pcm16k)
    emulator.behaviour.output_audio_buffer_events = False
    mark = len(emulator.sessions[-1].sent_events)
    without = await spoken_reply(session, speech_pcm16k)
    sent = [e["type"] for e in emulator.sessions[-1].sent_events[mark:]]
    assert "response.done" in sent
    assert not [kind for kind in sent if kind.startswith("output_audio_buffer.")]
    # Generation outpaces playback: most of the voice comes after response.done, and
    # all of it is heard.
    assert without.voiced_ms(after=without.done_at + OLD_DRAIN + 0.2) > 1000
    assert without.voiced_ms() > 0.9 * with_events.voiced_ms()
    assert without.voiced_ms() > 0.85 * await reference_voiced_ms(REPLY)
    # It ended soon after it went quiet.
    quiet_for = without.ended_at - without.last_voiced_at
    assert voice_end.QUIET_SECONDS - 0.1 <= quiet_for < voice_end.QUIET_SECONDS + 0.6


async def test_a_new_turn_silences_a_voice_the_service_never_spoke_of(
    emulator: Emulator, session: RealtimeSession, speech_pcm16k: bytes
) -> None:
    """No output_audio_buffer events: a wake during the voice still stops it."""
    emulator.behaviour.output_audio_buffer_events = False
    story = "Once upon a time, in a small house by the sea, there lived a lamp. " * 3
    emulator.assistant().add_turn(Turn(transcript="story", reply=story))
    turn = await session.start_audio_turn()
    turn.feed_audio(speech_pcm16k)
    session.connection.microphone.flush()
    voice = asyncio.ensure_future(collect(turn))
    async with asyncio.timeout(20):
        await turn.wait()
    await asyncio.sleep(0.5)  # the story plays on after response.done
    assert not voice.done()
    # The user wakes the satellite again, before saying anything.
    mark = len(emulator.sessions[-1].received_events)
    await session.start_audio_turn()
    first = await voice
    far = emulator.sessions[-1]
    async with asyncio.timeout(5):
        while "output_audio_buffer.clear" not in [
            e["type"] for e in far.received_events[mark:]
        ]:
            await asyncio.sleep(0.02)
    # The story stopped there, on the wire too: the next second is silence.
    listening = session.connection.speaker.subscribe()
    heard = bytearray()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            async for chunk in listening:
                heard += chunk
    listening.close()
    assert first.voiced_ms() < 0.6 * await reference_voiced_ms(story)
    assert len(heard) > 16_000  # the track went on, silent
    assert voiced_ms(bytes(heard)) < 100


# -- a voice that never goes quiet -------------------------------------------------------


@pytest.fixture
async def far_end(socket_enabled: None) -> AsyncIterator[HostilePeer]:
    async with HostilePeer() as peer:
        peer.loud_audio = True
        yield peer


@pytest.mark.parametrize("started", [True, False], ids=["started", "no events"])
async def test_a_voice_that_never_goes_quiet_ends_at_the_bound(
    far_end: HostilePeer,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    started: bool,
) -> None:
    """A far end whose voice goes on for ever, and that never says it stopped."""
    monkeypatch.setattr(voice_end, "CAP_SECONDS", 1.0)
    text = "It is on."
    bound = 1.0 + voice_end.CAP_PER_CHARACTER * len(text)
    credentials = Credentials(CLIENT_ID, CLIENT_SECRET, workspace_key="wk-voice")
    client = ItanniXClient(http, far_end.url, credentials, timeout=5.0)
    session = await RealtimeSession.open(client)
    try:
        far = await far_end.wait_session()
        far.answer_turns = False
        turn = await session.start_audio_turn()
        far.send_event({"type": "response.created", "response": {"id": "resp_1"}})
        if started:
            far.send_event(
                {"type": "output_audio_buffer.started", "response_id": "resp_1"}
            )
        far.send_event(
            {
                "type": "response.audio_transcript.delta",
                "response_id": "resp_1",
                "delta": text,
            }
        )
        await asyncio.sleep(0.5)  # some of the voice, before the response is done
        far.send_event(
            {
                "type": "response.done",
                "response": {"id": "resp_1", "status": "completed"},
            }
        )
        voice = await collect(turn, timeout=bound + 5)
    finally:
        await session.close()
    # Voiced to the end, which came at the bound after response.done.
    assert voice.voiced_ms(after=voice.ended_at - 0.3) > 0
    assert bound - 0.1 <= voice.ended_at - voice.done_at < bound + 1.0
