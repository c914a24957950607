"""A plain client of the emulator: the project's transport, and what it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import time
from typing import Any

import aiohttp

from custom_components.itannix.realtime import (
    Credentials,
    ItanniXClient,
    RealtimeConnection,
)
from tests.conftest import WORKSPACE_KEY
from tests.emulator import EmulatedSession, Emulator

CLIENT_ID = "7d3f0a52-6b1e-4c8d-9f2a-3e4b5c6d7e8f"
CLIENT_SECRET = "5eed" * 12
TEXT_DELTA = "response.text.delta"


def make_client(
    http: aiohttp.ClientSession, url: str, secret: str = CLIENT_SECRET
) -> ItanniXClient:
    credentials = Credentials(CLIENT_ID, secret, workspace_key=WORKSPACE_KEY)
    return ItanniXClient(http, url, credentials, timeout=5.0)


class Wire:
    """Everything the connection receives, with arrival times, from before connect."""

    def __init__(self, connection: RealtimeConnection) -> None:
        self.connection = connection
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.opened_at = 0.0
        self._changed = asyncio.Event()
        self._stream = connection.events()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        with contextlib.suppress(Exception):
            async for event in self._stream:
                self.events.append(event)
                self.times.append(time.monotonic())
                self._changed.set()
        self._changed.set()

    async def send(self, event: dict[str, Any]) -> int:
        """Send ``event``; return how many events had arrived before it was sent."""
        mark = len(self.events)
        await self.connection.send(event)
        return mark

    async def until(
        self,
        event_type: str,
        *,
        since: int = 0,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15.0,
    ) -> int:
        """Index of the first ``event_type`` event at or after ``since`` (waits)."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(since, len(self.events)):
                    event = self.events[i]
                    if event["type"] == event_type and (where is None or where(event)):
                        return i
                if self._task.done():
                    raise AssertionError(f"closed before {event_type}: {self.types()}")
                self._changed.clear()
                await self._changed.wait()

    async def event(self, event_type: str, **kwargs: Any) -> dict[str, Any]:
        return self.events[await self.until(event_type, **kwargs)]

    def types(self, since: int = 0, stop: int | None = None) -> list[str]:
        return [e["type"] for e in self.events[since:stop]]

    def of(self, response_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Events of one response (by response_id, or the response object's id)."""
        return [
            e
            for e in self.events[since:]
            if e.get("response_id") == response_id
            or (e.get("response") or {}).get("id") == response_id
        ]

    async def close(self) -> None:
        self._stream.close()
        await self._task


@contextlib.asynccontextmanager
async def connected(client: ItanniXClient, **kwargs: Any) -> AsyncIterator[Wire]:
    """A connected RealtimeConnection (receiving no audio unless told) and its Wire."""
    kwargs.setdefault("receive_audio", False)
    connection = RealtimeConnection(client, **kwargs)
    watch = Wire(connection)
    try:
        await connection.connect()
        watch.opened_at = time.monotonic()
        yield watch
    finally:
        await connection.close()
        await watch.close()


@contextlib.asynccontextmanager
async def wire(
    emulator: Emulator, client: ItanniXClient, **kwargs: Any
) -> AsyncIterator[tuple[Wire, EmulatedSession]]:
    """A connected Wire, and the emulator's side of that session."""
    async with connected(client, **kwargs) as watch:
        yield watch, emulator.sessions[-1]


def user_text(text: str, event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }
    if event_id is not None:
        event["event_id"] = event_id
    return event


def text_response(event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "response.create",
        "response": {"modalities": ["text"]},
    }
    if event_id is not None:
        event["event_id"] = event_id
    return event


def deltas(events: list[dict[str, Any]], event_type: str = TEXT_DELTA) -> str:
    return "".join(e["delta"] for e in events if e["type"] == event_type)


def say(connection: RealtimeConnection, pcm: bytes) -> None:
    """Speak into the microphone; the track sends silence after it, ending the turn."""
    connection.microphone.feed(pcm)
    connection.microphone.flush()
