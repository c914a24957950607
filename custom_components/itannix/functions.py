"""Function calls from the assistant, dispatched inside Home Assistant.

The assistant's tools are configured in the ItanniX dashboard, so Home Assistant learns
their names only when they are called. A call is dispatched by these rules, in order:

0. a built-in device function acts on the conversation's device (device_functions.py);
1. a tool of the Home Assistant LLM API the turn offered runs through the turn's runner;
2. anything else goes to automations: the ``itannix_function_call`` bus event, the
   entry's event entity and its device trigger; the call waits a while for the
   ``itannix.function_call_response`` action, else gets a default output.

``async_dispatch`` returns the call's one output; the realtime session sends it (or
nothing, when the session closed meanwhile, which cancels the dispatch).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
import json
from typing import Any, Final

from homeassistant.core import CALLBACK_TYPE, Context, HomeAssistant, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.json import JSONEncoder

from .const import (
    CONF_FUNCTION_TIMEOUT,
    DEFAULT_FUNCTION_TIMEOUT,
    DOMAIN,
    EVENT_FUNCTION_CALL,
    LOGGER,
)
from .device_functions import DEVICE_FUNCTIONS, DeviceTarget, async_run_device_function
from .realtime import FunctionCall
from .runtime import ItanniXConfigEntry

type CallHandler = Callable[[FunctionCall], Awaitable[str]]
type CallListener = Callable[[Mapping[str, Any]], None]

# Call ids whose default output went out, to tell a late response from a wrong id.
_EXPIRED_KEPT: Final = 64

PASSED_ON: Final = json.dumps(
    {
        "result": "The request was passed on to Home Assistant. "
        "No automation answered with a result."
    }
)


@dataclass(frozen=True, slots=True)
class CallContext:
    """Where a function call comes from, and what the turn can do for it."""

    conversation_id: str
    # The voice satellite's device and entity (spoken turns); None when typed.
    device_id: str | None = None
    satellite_entity_id: str | None = None
    # Where the reply plays, when that is not the satellite itself.
    media_player_entity_id: str | None = None
    # The LLM API tools the turn offered, and how the turn runs one (its chat log).
    llm_tools: frozenset[str] = frozenset()
    run_llm_tool: CallHandler | None = None
    # Cuts the assistant's spoken reply short on the device (spoken turns).
    stop_reply: Callable[[], Awaitable[None]] | None = None
    # The user's context, so what the call causes is attributed to them.
    context: Context | None = None


class InvalidArgumentsError(ValueError):
    """A call's arguments are not a JSON object."""


def parse_arguments(call: FunctionCall) -> dict[str, Any]:
    """The call's arguments as an object; an empty string means no arguments."""
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError as err:
        raise InvalidArgumentsError(
            f"The arguments of {call.name} are not valid JSON; nothing was done."
        ) from err
    if not isinstance(arguments, dict):
        raise InvalidArgumentsError(
            f"The arguments of {call.name} must be a JSON object; nothing was done."
        )
    return arguments


class FunctionDispatcher:
    """Dispatches the function calls of one config entry and collects their answers."""

    def __init__(self, hass: HomeAssistant, entry: ItanniXConfigEntry) -> None:
        """Initialize; nothing waits yet."""
        self._hass = hass
        self._entry = entry
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._expired: deque[str] = deque(maxlen=_EXPIRED_KEPT)
        self._listeners: list[CallListener] = []

    @property
    def timeout(self) -> float:
        """Seconds an automation has to answer a call."""
        return float(
            self._entry.options.get(CONF_FUNCTION_TIMEOUT, DEFAULT_FUNCTION_TIMEOUT)
        )

    @property
    def waiting(self) -> int:
        """Calls waiting for an automation's answer."""
        return len(self._waiting)

    def handler(self, ctx: CallContext) -> CallHandler:
        """A realtime session's function handler for calls made in ``ctx``."""
        return partial(self.async_dispatch, ctx=ctx)

    @callback
    def async_add_listener(self, listener: CallListener) -> CALLBACK_TYPE:
        """Call ``listener`` with the data of every call handed to automations."""
        self._listeners.append(listener)

        @callback
        def _remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return _remove

    async def async_dispatch(self, call: FunctionCall, ctx: CallContext) -> str:
        """Return the output for one function call."""
        if call.name in DEVICE_FUNCTIONS:
            try:
                arguments = parse_arguments(call)
            except InvalidArgumentsError as err:
                return json.dumps({"error": str(err)})
            target = DeviceTarget(
                device_id=ctx.device_id,
                satellite_entity_id=ctx.satellite_entity_id,
                media_player_entity_id=ctx.media_player_entity_id,
                stop_reply=ctx.stop_reply,
                context=ctx.context or Context(),
            )
            return await async_run_device_function(
                self._hass, call.name, arguments, target
            )
        if ctx.run_llm_tool is not None and call.name in ctx.llm_tools:
            return await ctx.run_llm_tool(call)
        return await self._async_hand_to_automations(call, ctx)

    def _device_id(self, ctx: CallContext) -> str | None:
        if ctx.device_id is not None or ctx.satellite_entity_id is None:
            return ctx.device_id
        satellite = er.async_get(self._hass).async_get(ctx.satellite_entity_id)
        return satellite.device_id if satellite is not None else None

    async def _async_hand_to_automations(
        self, call: FunctionCall, ctx: CallContext
    ) -> str:
        try:
            arguments = parse_arguments(call)
        except InvalidArgumentsError as err:
            LOGGER.debug("Function call %s not fired: %s", call.call_id, err)
            return json.dumps({"error": str(err)})
        if call.call_id in self._waiting:
            # The session answers a call id once; a second dispatch is a bug upstream.
            return json.dumps({"error": f"Call {call.call_id} is already running."})
        data = {
            "name": call.name,
            "arguments": arguments,
            "call_id": call.call_id,
            "conversation_id": ctx.conversation_id,
            "device_id": self._device_id(ctx),
            "entry_id": self._entry.entry_id,
        }
        future: asyncio.Future[str] = self._hass.loop.create_future()
        # Waiting before firing: an automation may answer before we get to await.
        self._waiting[call.call_id] = future
        try:
            self._hass.bus.async_fire(EVENT_FUNCTION_CALL, data, context=ctx.context)
            for listener in list(self._listeners):
                listener(data)
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            self._expired.append(call.call_id)
            LOGGER.debug(
                "No answer to function call %s (%s) within %s s: default output",
                call.call_id,
                call.name,
                self.timeout,
            )
            return PASSED_ON
        finally:
            if self._waiting.get(call.call_id) is future:
                del self._waiting[call.call_id]

    @callback
    def async_respond(self, call_id: str, response: Mapping[str, Any]) -> bool:
        """Answer a waiting call; False when no call of this entry waits for it."""
        future = self._waiting.get(call_id)
        if future is None or future.done():
            if call_id in self._expired:
                LOGGER.info(
                    "Response to function call %s came after its wait ended; dropped",
                    call_id,
                )
            return False
        try:
            output = json.dumps(response, cls=JSONEncoder)
        except (TypeError, ValueError) as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_response",
                translation_placeholders={"error": str(err)},
            ) from err
        future.set_result(output)
        return True

    @callback
    def async_shutdown(self) -> None:
        """Stop every wait: their calls get no output (their sessions are gone)."""
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        self._listeners.clear()
