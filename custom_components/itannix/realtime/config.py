"""The session's configuration: the assistant's own, and what a caller adds to it.

``session.created`` carries the session as configured for the assistant (for ItanniX: the
dashboard's instructions and tools, the built-in device functions among them). A
``session.update`` replaces each field it names whole, so a caller's tools and context are
sent as the union with the assistant's own, never instead of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import json
from typing import Any

type Tool = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AssistantConfig:
    """What ``session.created`` said of the assistant; None: it did not say."""

    tools: tuple[Tool, ...] | None = None
    instructions: str | None = None


def parse_assistant_config(session: Any) -> AssistantConfig:
    """The assistant's tools and instructions from a ``session`` object."""
    if not isinstance(session, dict):
        return AssistantConfig()
    tools = session.get("tools")
    instructions = session.get("instructions")
    return AssistantConfig(
        tools=(
            tuple(tool for tool in tools if isinstance(tool, dict))
            if isinstance(tools, list)
            else None
        ),
        instructions=instructions if isinstance(instructions, str) else None,
    )


def function_tool(
    name: str, parameters: Mapping[str, Any], description: str | None = None
) -> Tool:
    """A function the assistant may call, in the session's ``tools`` format."""
    tool: dict[str, Any] = {"type": "function", "name": name}
    if description:
        tool["description"] = description
    tool["parameters"] = dict(parameters)
    return tool


def tool_name(tool: Tool) -> str | None:
    """A tool's function name."""
    name = tool.get("name")
    return name if isinstance(name, str) else None


def merge_tools(own: Sequence[Tool] | None, added: Sequence[Tool]) -> list[Tool]:
    """The assistant's tools plus ``added``; an added tool replaces one of its name."""
    names = {tool_name(tool) for tool in added}
    return [tool for tool in own or () if tool_name(tool) not in names] + list(added)


def merge_instructions(own: str | None, added: str) -> str:
    """The assistant's instructions, then the caller's context."""
    return "\n\n".join(part for part in (own, added) if part)


def tools_signature(tools: Sequence[Tool]) -> tuple[str, ...]:
    """What identifies a tool list for "already installed" (names and schemas)."""
    return tuple(
        sorted(json.dumps(tool, sort_keys=True, default=str) for tool in tools)
    )
