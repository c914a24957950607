"""A turn's reply streamed from a realtime session into Home Assistant's chat log.

The assistant's reply streams into the chat log as it arrives. Its calls of Home Assistant
LLM API tools go through the chat log too (so the Assist debug view shows them), and each
tool result goes back to the assistant as that call's ``function_call_output``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
import json
from typing import Any

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm

from .compat import said_by_home_assistant, tool_result_data
from .functions import CallContext, FunctionDispatcher
from .prompt import TurnPrompt
from .realtime import CannotConnectError, FunctionCall, Tool, function_tool
from .sessions import LiveSession


class DroppedBeforeReplyError(CannotConnectError):
    """The session dropped before the turn produced anything: it can be asked again.

    Nothing reached the chat log and no function ran, so a retry on a fresh session
    neither repeats an action nor shows the user half a reply twice.
    """


# The Realtime API takes a plain JSON schema object for a function's parameters.
_UNSUPPORTED_KEYS = {"oneOf", "anyOf", "allOf", "enum", "not"}


def _openapi_converter() -> Callable[..., dict[str, Any]]:
    """Return Home Assistant's own schema converter.

    Home Assistant 2026.x ships probatio, 2025.12 voluptuous-openapi; never both.
    """
    converter: Callable[..., dict[str, Any]]
    try:
        from probatio import to_openapi  # noqa: PLC0415
    except ImportError:
        from voluptuous_openapi import convert  # noqa: PLC0415

        converter = convert
    else:
        converter = partial(to_openapi, openapi_version="3.1.0")
    return converter


def _tool_schema(tool: llm.Tool, api: llm.APIInstance) -> Tool:
    """An LLM API tool as a function the assistant may call (the library's format)."""
    parameters = _openapi_converter()(
        tool.parameters, custom_serializer=api.custom_serializer
    )
    return function_tool(
        tool.name,
        {
            key: value
            for key, value in parameters.items()
            if key not in _UNSUPPORTED_KEYS
        },
        tool.description,
    )


async def async_prepare_session(live: LiveSession, prompt: TurnPrompt) -> None:
    """Give the session this turn's tools and context (sent only when they changed).

    The library adds them to the assistant's own (the ItanniX dashboard's tools and
    instructions) rather than replacing them.
    """
    api = prompt.api
    tools = [_tool_schema(tool, api) for tool in api.tools] if api is not None else []
    await live.session.configure(tools=tools, context=prompt.text)


async def async_replay_history(
    live: LiveSession, contents: Sequence[conversation.Content]
) -> None:
    """Give a fresh session the conversation so far.

    A session closed for idleness (or never opened, when a satellite's conversation
    began with an announcement) would otherwise answer without the context Home
    Assistant's chat log still holds.
    """
    if live.history_replayed:
        return
    live.history_replayed = True
    if live.turns:
        return  # the session was there all along
    await live.session.add_history(_history(contents))


def _history(contents: Sequence[conversation.Content]) -> list[tuple[str, str]]:
    """What was said, without the turns that failed (and Home Assistant answered)."""
    said: list[tuple[str, str]] = []
    for content in contents:
        if said_by_home_assistant(content):
            if said and said[-1][0] == "user":
                said.pop()  # the question of a turn that was never answered
            continue
        if content.role in ("user", "assistant") and content.content:
            said.append((content.role, content.content))
    return said


class TurnStream:
    """Feeds the chat log: reply text, and tool calls whose results it awaits."""

    def __init__(self, chat_log: conversation.ChatLog) -> None:
        """Start an empty stream for one turn of ``chat_log``."""
        self._chat_log = chat_log
        # None ends the stream; an exception ends it with that error.
        self._queue: asyncio.Queue[
            conversation.AssistantContentDeltaDict | BaseException | None
        ] = asyncio.Queue()
        self._results: dict[str, asyncio.Future[Any]] = {}

    def text(self, delta: str) -> None:
        """Add reply text."""
        self._queue.put_nowait({"content": delta})

    def end(self) -> None:
        """End the reply."""
        self._queue.put_nowait(None)

    def fail(self, err: BaseException) -> None:
        """End the reply with an error, raised to the chat log's reader."""
        self._queue.put_nowait(err)

    async def deltas(self) -> AsyncIterator[conversation.AssistantContentDeltaDict]:
        """The reply as chat log deltas."""
        yield {"role": "assistant"}
        # The reply's text runs on across a tool call with a space between its parts;
        # the message after the call starts with its first word, not that space.
        begun = False
        while (item := await self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            if "role" in item:
                begun = False
            elif "content" in item and not begun:
                text = (item["content"] or "").lstrip()
                if not text:
                    continue
                item = {"content": text}
                begun = True
            yield item

    def resolve(self, content: Any) -> None:
        """A tool result the chat log produced."""
        if isinstance(content, conversation.ToolResultContent):
            future = self._results.pop(content.tool_call_id, None)
            if future is not None and not future.done():
                future.set_result(tool_result_data(content))

    def cancel_pending(self) -> None:
        """Stop waiting for tool results (the turn is over)."""
        for future in self._results.values():
            future.cancel()
        self._results.clear()

    @property
    def llm_tools(self) -> frozenset[str]:
        """Names of the LLM API tools this turn offers (``call_tool`` runs them)."""
        api = self._chat_log.llm_api
        return frozenset(tool.name for tool in api.tools) if api else frozenset()

    async def call_tool(self, call: FunctionCall) -> str:
        """Run a function call as an LLM API tool through the chat log."""
        api = self._chat_log.llm_api
        if api is None or call.name not in {tool.name for tool in api.tools}:
            return json.dumps(
                {"error": f"Function {call.name} is not available in Home Assistant"}
            )
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError:
            return json.dumps({"error": "The arguments are not valid JSON"})
        if not isinstance(args, dict):
            return json.dumps({"error": "The arguments must be a JSON object"})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[call.call_id] = future
        tool_input = llm.ToolInput(tool_name=call.name, tool_args=args, id=call.call_id)
        # The call joins the current assistant message; a new one closes it, which makes
        # the chat log run the tool and hand us its result.
        self._queue.put_nowait({"tool_calls": [tool_input]})
        self._queue.put_nowait({"role": "assistant"})
        return json.dumps(await future)


type ReplyProducer = Callable[[TurnStream], Awaitable[None]]


async def async_stream_reply(
    hass: HomeAssistant,
    chat_log: conversation.ChatLog,
    agent_id: str,
    produce: ReplyProducer,
) -> None:
    """Stream what ``produce`` feeds (reply text, tool calls) into the chat log."""
    stream = TurnStream(chat_log)

    async def pump() -> None:
        try:
            await produce(stream)
        except BaseException as err:
            stream.fail(err)
            raise
        else:
            stream.end()

    pump_task = hass.async_create_task(pump(), "itannix reply", eager_start=True)
    try:
        async for content in chat_log.async_add_delta_content_stream(
            agent_id, stream.deltas()
        ):
            stream.resolve(content)
    finally:
        stream.cancel_pending()
        if not pump_task.done():
            pump_task.cancel()
        # The pump's error (if any) was already raised through the stream.
        await asyncio.gather(pump_task, return_exceptions=True)
    if not isinstance(chat_log.content[-1], conversation.AssistantContent):
        # A reply with no text still ends the turn with an assistant message.
        chat_log.async_add_assistant_content_without_tools(
            conversation.AssistantContent(agent_id=agent_id, content="")
        )


async def async_run_text_turn(
    hass: HomeAssistant,
    live: LiveSession,
    chat_log: conversation.ChatLog,
    agent_id: str,
    text: str,
    dispatcher: FunctionDispatcher,
    prompt: TurnPrompt,
) -> None:
    """Send ``text`` and stream the assistant's reply (and tool calls) into the log."""
    produced = False

    async def produce(stream: TurnStream) -> None:
        nonlocal produced
        # A typed conversation has no device; LLM API tools run through the log.
        dispatch = dispatcher.handler(
            CallContext(
                conversation_id=chat_log.conversation_id,
                llm_tools=stream.llm_tools,
                run_llm_tool=stream.call_tool,
            )
        )

        async def handle(call: FunctionCall) -> str:
            nonlocal produced
            produced = True
            return await dispatch(call)

        live.call_handler = handle
        try:
            reply = await live.session.ask(text)
            async for delta in reply:
                produced = True
                stream.text(delta)
        finally:
            live.call_handler = None

    try:
        await async_prepare_session(live, prompt)
        # The log already ends with this message, which ask() sends itself.
        await async_replay_history(live, chat_log.content[:-1])
        await async_stream_reply(hass, chat_log, agent_id, produce)
    except CannotConnectError as err:
        dropped = live.session.connection.close_reason is not None
        if dropped and not produced:
            raise DroppedBeforeReplyError(err.message) from err
        raise
