"""Live realtime sessions of one entry: one per conversation, kept while in use.

A conversation keeps its context in its realtime session, so a session stays open between
turns and closes once it has been idle for the configured time, when the service drops it,
when the entry unloads, or to make room: at most ``max_sessions`` are open, and a new one
closes the conversation idle the longest.

A typed conversation's session does not receive audio (the service would otherwise send
it 50 times a second, for nothing); when such a conversation goes on by voice, its session
is replaced by one that does, and the conversation so far is replayed to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import time
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

from .const import (
    CONF_IDLE_TIMEOUT,
    CONF_MAX_SESSIONS,
    CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SESSIONS,
    LOGGER,
)
from .realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
    CannotConnectError,
    FunctionCall,
    ItanniXClient,
    ItanniXError,
    RealtimeConnection,
    RealtimeSession,
    SessionExpiredError,
)
from .runtime import ItanniXConfigEntry

type CallHandler = Callable[[FunctionCall], Awaitable[str]]

# A session is renewed between turns once it reached this share of the longest the
# service was seen to keep one.
RENEW_AT = 0.9


class SessionLimitError(ItanniXError):
    """As many conversations as allowed are in a turn: none can be closed for another."""

    def __init__(self, count: int) -> None:
        """Initialize with the number of sessions open."""
        super().__init__(f"{count} conversations are in progress")
        self.count = count


class LiveSession:
    """One open realtime session and what this integration has told it."""

    def __init__(
        self, key: str, session: RealtimeSession, *, receives_audio: bool
    ) -> None:
        """Wrap a connected session."""
        self.key = key
        self.session = session
        # Whether the service sends this session audio (spoken turns need it).
        self.receives_audio = receives_audio
        # Turns that were handed the session and have not finished: only a session
        # nobody uses counts down to closing, or may be closed to make room.
        self.users = 0
        self.last_used = time.monotonic()
        self._unused = asyncio.Event()
        self._unused.set()
        # One turn at a time: the service answers one response per conversation.
        self.lock = asyncio.Lock()
        self.call_handler: CallHandler | None = None
        self.turns = 0
        # Whether the conversation's earlier messages were given to this session.
        self.history_replayed = False
        self._cancel_idle: CALLBACK_TYPE | None = None

    async def handle_call(self, call: FunctionCall) -> str:
        """Route a function call to whoever runs the current turn."""
        if self.call_handler is None:
            return '{"error": "No turn is waiting for this function call"}'
        return await self.call_handler(call)

    def acquire(self) -> None:
        """A turn takes the session."""
        self.users += 1
        self.last_used = time.monotonic()
        self._unused.clear()
        self.cancel_idle()

    def release(self) -> None:
        """A turn is done with the session."""
        self.users = max(0, self.users - 1)
        self.last_used = time.monotonic()
        if not self.users:
            self._unused.set()

    async def wait_unused(self) -> None:
        """Wait until no turn uses the session."""
        await self._unused.wait()

    def cancel_idle(self) -> None:
        """Stop the idle countdown (a turn is starting)."""
        if self._cancel_idle is not None:
            self._cancel_idle()
            self._cancel_idle = None

    def schedule_idle(
        self, hass: HomeAssistant, delay: float, action: Callable[[], None]
    ) -> None:
        """Start (or restart) the idle countdown."""
        self.cancel_idle()

        @callback
        def _expired(_now: Any) -> None:
            self._cancel_idle = None
            action()

        self._cancel_idle = async_call_later(hass, delay, _expired)


class SessionManager:
    """Opens, reuses and closes the realtime sessions of one config entry."""

    def __init__(
        self, hass: HomeAssistant, entry: ItanniXConfigEntry, client: ItanniXClient
    ) -> None:
        """Initialize; sessions open on demand."""
        self._hass = hass
        self._entry = entry
        self._client = client
        self._live: dict[str, LiveSession] = {}
        self._opening: dict[str, asyncio.Future[LiveSession]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0

        async def _on_stop(_event: Event) -> None:
            await self.async_close_all()

        entry.async_on_unload(
            hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _on_stop)
        )

    @property
    def idle_timeout(self) -> float:
        """Seconds an unused session stays open."""
        return float(self._entry.options.get(CONF_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT))

    @property
    def max_sessions(self) -> int:
        """How many sessions may be open at once."""
        return int(self._entry.options.get(CONF_MAX_SESSIONS, DEFAULT_MAX_SESSIONS))

    def get(self, key: str) -> LiveSession | None:
        """The open session of a conversation, if there is one."""
        live = self._live.get(key)
        if live is not None and live.session.closed:
            self._forget(live)
            return None
        return live

    def _near_its_end(self, live: LiveSession) -> bool:
        """Whether the service is about to end the session at its maximum duration.

        The service ends sessions at a maximum duration it does not publish; once it
        has ended one, sessions that old are replaced between turns (the new one is
        given the conversation so far) instead of expiring mid-turn.
        """
        cap = self._client.session_cap
        return cap is not None and live.session.age >= cap * RENEW_AT

    async def async_get(self, key: str, *, audio: bool) -> LiveSession:
        """Return the conversation's session for a turn, opening one if needed.

        ``audio``: the turn is spoken, so the session must receive the assistant's
        voice. The caller must hand it back with ``turn_finished`` on every path.
        """
        while True:
            live = await self._async_get(key, audio=audio)
            if audio and not live.receives_audio:
                # A typed conversation goes on by voice: replace its session.
                await live.wait_unused()
                await self.async_close(key)
                continue
            if live.session.closed:
                # Dropped as soon as it opened: say why rather than open again.
                raise live.session.connection.close_reason or CannotConnectError(
                    "The session closed"
                )
            live.acquire()
            return live

    async def _async_get(self, key: str, *, audio: bool) -> LiveSession:
        if (live := self.get(key)) is not None:
            if not (live.users == 0 and self._near_its_end(live)):
                return live
            LOGGER.debug("Renewing the realtime session of conversation %s", key)
            await self.async_close(key)
        if (pending := self._opening.get(key)) is not None:
            return await asyncio.shield(pending)
        self._make_room()
        future: asyncio.Future[LiveSession] = self._hass.loop.create_future()
        self._opening[key] = future
        try:
            live = await self._async_open(key, audio=audio)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as err:
            future.set_exception(err)
            future.exception()  # the opener re-raises; waiters, if any, see it too
            raise
        else:
            future.set_result(live)
            return live
        finally:
            del self._opening[key]

    def _make_room(self) -> None:
        """Close the longest-idle sessions until one more fits under the cap."""
        cap = self.max_sessions
        while len(self._live) + len(self._opening) >= cap:
            idle = [live for live in self._live.values() if not live.users]
            if not idle:
                raise SessionLimitError(len(self._live) + len(self._opening))
            oldest = min(idle, key=lambda live: live.last_used)
            LOGGER.debug(
                "%s conversations open: closing the one idle longest (%s)",
                cap,
                oldest.key,
            )
            self._close_later(oldest)

    async def _async_open(self, key: str, *, audio: bool) -> LiveSession:
        # Input transcription is on for every session: a spoken turn needs the
        # transcript, and a typed one sends no audio to transcribe.
        connection = RealtimeConnection(
            self._client,
            connect_timeout=CONNECT_TIMEOUT,
            input_transcription_model=DEFAULT_TRANSCRIPTION_MODEL,
            receive_audio=audio,
        )
        session = RealtimeSession(connection)
        live = LiveSession(key, session, receives_audio=audio)
        session.function_handler = live.handle_call
        try:
            await session.connect()
        except BaseException:
            await session.close()
            raise

        def _closed(reason: ItanniXError | None) -> None:
            if isinstance(reason, SessionExpiredError):
                # Expected: the next turn gets a fresh session with the conversation.
                LOGGER.info(
                    "The realtime session of conversation %s expired: %s", key, reason
                )
            elif reason is not None:
                # The one line a drop logs; the turn it interrupted, if any, is
                # retried or fails on its own.
                LOGGER.warning(
                    "The realtime session of conversation %s dropped: %s", key, reason
                )
            self._forget(live)

        connection.add_close_listener(_closed)
        self._live[key] = live
        self.opened += 1
        LOGGER.debug("Opened a realtime session for conversation %s", key)
        return live

    def turn_finished(self, live: LiveSession) -> None:
        """A turn ended: once nobody uses the session, count down to closing it."""
        live.turns += 1
        live.release()
        if self._live.get(live.key) is live and not live.users:
            live.schedule_idle(
                self._hass, self.idle_timeout, lambda: self._close_later(live)
            )

    async def async_close(self, key: str) -> None:
        """Close the session of one conversation (after a failure, say)."""
        if (live := self._live.get(key)) is not None:
            self._forget(live)
            await live.session.close()

    @callback
    def _forget(self, live: LiveSession) -> None:
        live.cancel_idle()
        if self._live.get(live.key) is live:
            del self._live[live.key]

    @callback
    def _close_later(self, live: LiveSession) -> None:
        LOGGER.debug("Closing idle realtime session of conversation %s", live.key)
        self._forget(live)
        task = self._entry.async_create_background_task(
            self._hass, live.session.close(), f"itannix close {live.key}"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def async_close_all(self) -> None:
        """Close every session of the entry."""
        live = list(self._live.values())
        for item in live:
            self._forget(item)
        await asyncio.gather(*(item.session.close() for item in live), *self._closing)

    def diagnostics(self) -> dict[str, Any]:
        """Counts only: conversation IDs and transcripts stay out of diagnostics."""
        return {
            "open": len(self._live),
            "max_sessions": self.max_sessions,
            "opened_since_setup": self.opened,
            "idle_timeout": self.idle_timeout,
        }
