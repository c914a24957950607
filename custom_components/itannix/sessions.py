"""Live realtime sessions of one entry: one per conversation, kept while in use.

A conversation keeps its context in its realtime session, so a session stays open between
turns and closes once it has been idle for the configured time, when the service drops it,
or when the entry unloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

from .const import CONF_IDLE_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, LOGGER
from .realtime import (
    DEFAULT_TRANSCRIPTION_MODEL,
    FunctionCall,
    ItanniXClient,
    RealtimeConnection,
    RealtimeSession,
)
from .runtime import ItanniXConfigEntry

type CallHandler = Callable[[FunctionCall], Awaitable[str]]


class LiveSession:
    """One open realtime session and what this integration has told it."""

    def __init__(self, key: str, session: RealtimeSession) -> None:
        """Wrap a connected session."""
        self.key = key
        self.session = session
        # One turn at a time: the service answers one response per conversation.
        self.lock = asyncio.Lock()
        # Tools the assistant has from its dashboard configuration (session.created).
        self.dashboard_tools: list[dict[str, Any]] = []
        # What this integration last installed with session.update, to send it once.
        self.installed: tuple[str, ...] | None = None
        self.call_handler: CallHandler | None = None
        self.turns = 0
        # Whether the conversation's earlier messages were given to this session.
        self.history_replayed = False
        # Whether Home Assistant's system prompt was given to this session.
        self.prompt_sent = False
        self._cancel_idle: CALLBACK_TYPE | None = None

    async def handle_call(self, call: FunctionCall) -> str:
        """Route a function call to whoever runs the current turn."""
        if self.call_handler is None:
            return '{"error": "No turn is waiting for this function call"}'
        return await self.call_handler(call)

    def on_event(self, event: dict[str, Any]) -> None:
        """Remember the assistant's own tools, announced when the session starts."""
        if event.get("type") in ("session.created", "session.updated") and isinstance(
            session := event.get("session"), dict
        ):
            tools = session.get("tools")
            if isinstance(tools, list) and self.installed is None:
                self.dashboard_tools = [
                    tool for tool in tools if isinstance(tool, dict)
                ]

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

    def get(self, key: str) -> LiveSession | None:
        """The open session of a conversation, if there is one."""
        live = self._live.get(key)
        if live is not None and live.session.closed:
            self._forget(live)
            return None
        return live

    async def async_get(self, key: str) -> LiveSession:
        """Return the conversation's session, opening one if needed."""
        if (live := self.get(key)) is not None:
            return live
        if (pending := self._opening.get(key)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LiveSession] = self._hass.loop.create_future()
        self._opening[key] = future
        try:
            live = await self._async_open(key)
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

    async def _async_open(self, key: str) -> LiveSession:
        # Input transcription is on for every session: a spoken turn needs the
        # transcript, and a typed one sends no audio to transcribe.
        connection = RealtimeConnection(
            self._client,
            connect_timeout=CONNECT_TIMEOUT,
            input_transcription_model=DEFAULT_TRANSCRIPTION_MODEL,
        )
        session = RealtimeSession(connection)
        live = LiveSession(key, session)
        session.function_handler = live.handle_call
        connection.add_listener(live.on_event)
        try:
            await session.connect()
        except BaseException:
            await session.close()
            raise
        connection.add_close_listener(lambda _reason: self._forget(live))
        self._live[key] = live
        self.opened += 1
        LOGGER.debug("Opened a realtime session for conversation %s", key)
        return live

    def turn_finished(self, live: LiveSession) -> None:
        """A turn ended: count down to closing the idle session."""
        live.turns += 1
        if self._live.get(live.key) is live:
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
            "opened_since_setup": self.opened,
            "idle_timeout": self.idle_timeout,
        }
