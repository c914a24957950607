"""The assistant's function calls: exactly one ``function_call_output`` per call id.

A call of a response some turn follows runs the handler; a call of a response nobody
follows any more (cancelled by a barge-in, abandoned) is answered without running, so
the conversation stays whole and no action happens that nobody asked to wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import json
import logging
import re
from typing import Any, Final

from .errors import CannotConnectError
from .events import CONVERSATION_ITEM_CREATE, Event, FunctionCall
from .logs import OnceLogger

_LOGGER = logging.getLogger(__name__)

type FunctionHandler = Callable[[FunctionCall], Awaitable[Any]]
type Sender = Callable[[Event], Awaitable[object]]
type Spawner = Callable[[Awaitable[None]], asyncio.Task[None]]

NOT_RUN = "Not run: the reply it belonged to was interrupted"
NOT_A_NAME = "Not run: that is not a function name"
# What the Realtime API allows a function's name to be. A call by any other name names
# no function anyone declared: it is answered without running, and its name is never
# passed on (to the handler, Home Assistant's events or the log).
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def function_output(call_id: str, output: str) -> Event:
    """The ``conversation.item.create`` that answers a call."""
    return {
        "type": CONVERSATION_ITEM_CREATE,
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


class CallRunner:
    """Runs calls with the handler (bounded) and sends each one output."""

    def __init__(self, send: Sender, spawn: Spawner, *, timeout: float) -> None:
        """Initialize with how events are sent and tasks spawned."""
        self.handler: FunctionHandler | None = None
        self.timeout = timeout
        self._send = send
        self._spawn = spawn
        self._answered: set[str] = set()
        self._by_response: dict[str, list[asyncio.Task[None]]] = {}
        self._once = OnceLogger(_LOGGER)

    def seen(self, call: FunctionCall) -> bool:
        """Whether the call was already answered (or is being)."""
        return call.call_id in self._answered

    def start(self, call: FunctionCall, response_id: str) -> None:
        """Run the handler for a call of a response that is followed."""
        self._answered.add(call.call_id)
        if _FUNCTION_NAME.fullmatch(call.name) is None:
            self._once.warning(
                "name",
                "Not running a call whose name is not a function name (%d characters)",
                len(call.name),
            )
            output = _constant(json.dumps({"error": NOT_A_NAME}))
        else:
            output = self._run_handler(call)
        task = self._spawn(self._answer(call, output))
        self._by_response.setdefault(response_id, []).append(task)

    def abandon(self, call: FunctionCall) -> None:
        """Answer a call of a response nobody follows, without running it."""
        self._answered.add(call.call_id)
        _LOGGER.debug("Not running %s: its response is no longer followed", call.name)
        self._spawn(self._answer(call, _constant(json.dumps({"error": NOT_RUN}))))

    def take(self, response_id: str) -> list[asyncio.Task[None]]:
        """The calls of a response (forgotten here once taken)."""
        return self._by_response.pop(response_id, [])

    async def _answer(self, call: FunctionCall, output: Awaitable[str]) -> None:
        try:
            await self._send(function_output(call.call_id, await output))
        except CannotConnectError:
            _LOGGER.debug("Session closed before the output of %s", call.name)

    async def _run_handler(self, call: FunctionCall) -> str:
        handler = self.handler
        if handler is None:
            return json.dumps({"error": f"No handler for function {call.name}"})
        try:
            async with asyncio.timeout(self.timeout):
                result = await handler(call)
        except TimeoutError:
            _LOGGER.warning("Function %s timed out", call.name)
            return json.dumps({"error": f"Function {call.name} timed out"})
        except Exception as err:  # noqa: BLE001 - any failure still gets an output
            _LOGGER.warning("Function %s failed: %s", call.name, err)
            return json.dumps({"error": f"{type(err).__name__}: {err}"})
        if isinstance(result, str):
            return result
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return json.dumps({"result": str(result)})


async def _constant(value: str) -> str:
    return value
