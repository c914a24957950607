"""Scripted turns from a JSON file, reloaded when the file changes (``--turns FILE``).

The file holds a list of turns::

    [
      {"transcript": "turn on the kitchen light", "reply": "Sure.",
       "function_calls": [{"name": "light_on", "arguments": {"room": "kitchen"}}],
       "reply_after_tools": "The light is {light_on}."},
      {"user_text": "what time is it", "reply": "Noon.", "status": "incomplete"}
    ]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from .brain import FunctionCallSpec, ScriptedBrain, Turn

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 0.5
STATUSES = ("completed", "failed", "incomplete")
_STRING_KEYS = ("user_text", "transcript", "reply_after_tools", "transcription_error")
_TURN_KEYS = frozenset(
    {
        *_STRING_KEYS,
        "reply",
        "function_calls",
        "status",
        "status_details",
        "dashboard_tools",
    }
)
_CALL_KEYS = frozenset({"name", "arguments", "call_id"})


class TurnsFileError(ValueError):
    """The turns file cannot be used (the message says where and why)."""


def _call(where: str, data: Any) -> FunctionCallSpec:
    if not isinstance(data, dict):
        raise TurnsFileError(f"{where}: a function call is an object")
    if unknown := sorted(set(data) - _CALL_KEYS):
        raise TurnsFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise TurnsFileError(f"{where}: 'name' must be a non-empty string")
    arguments = data.get("arguments", {})
    if isinstance(arguments, dict):
        arguments = json.dumps(arguments)
    elif not isinstance(arguments, str):
        raise TurnsFileError(f"{where}: 'arguments' must be an object or a string")
    call_id = data.get("call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise TurnsFileError(f"{where}: 'call_id' must be a string")
    return FunctionCallSpec(name=name, arguments=arguments, call_id=call_id)


def _turn(where: str, data: Any) -> Turn:
    if not isinstance(data, dict):
        raise TurnsFileError(f"{where}: a turn is an object")
    if unknown := sorted(set(data) - _TURN_KEYS):
        raise TurnsFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in _STRING_KEYS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise TurnsFileError(f"{where}: {key!r} must be a string")
    reply = data.get("reply", "")
    if not isinstance(reply, str):
        raise TurnsFileError(f"{where}: 'reply' must be a string")
    status = data.get("status", "completed")
    if status not in STATUSES:
        raise TurnsFileError(f"{where}: 'status' must be one of {', '.join(STATUSES)}")
    details = data.get("status_details")
    if details is not None and not isinstance(details, dict):
        raise TurnsFileError(f"{where}: 'status_details' must be an object")
    calls = data.get("function_calls", [])
    if not isinstance(calls, list):
        raise TurnsFileError(f"{where}: 'function_calls' must be a list")
    return Turn(
        user_text=data.get("user_text"),
        transcript=data.get("transcript"),
        reply=reply,
        function_calls=[
            _call(f"{where}, function call {i + 1}", call)
            for i, call in enumerate(calls)
        ],
        reply_after_tools=data.get("reply_after_tools"),
        dashboard_tools=bool(data.get("dashboard_tools", True)),
        transcription_error=data.get("transcription_error"),
        status=status,
        status_details=details,
    )


def parse_turns(data: Any) -> list[Turn]:
    """Turns from the file's parsed JSON; TurnsFileError when it does not fit."""
    if not isinstance(data, list):
        raise TurnsFileError("the file must hold a JSON list of turns")
    return [_turn(f"turn {i + 1}", item) for i, item in enumerate(data)]


def load_turns(path: Path) -> list[Turn]:
    """Read and parse the turns file; TurnsFileError on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TurnsFileError(f"cannot read it ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise TurnsFileError("it is not UTF-8 text") from err
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise TurnsFileError(f"not valid JSON ({err})") from err
    return parse_turns(data)


class TurnsFileWatcher:
    """Keep a brain's pending turns equal to a file's, reloading when it changes."""

    def __init__(
        self, path: Path, brain: ScriptedBrain, interval: float = POLL_SECONDS
    ) -> None:
        """Watch ``path`` for ``brain`` (every ``interval`` seconds once started)."""
        self.path = path
        self.brain = brain
        self.interval = interval
        self.loads = 0  # successful loads
        self.errors = 0  # rejected versions of the file
        self._stamp: tuple[int, int] | None = None
        self._looked = False
        self._task: asyncio.Task[None] | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def check(self) -> bool:
        """Load the file when it changed since the last look; True when loaded."""
        stamp = self._file_stamp()
        if self._looked and stamp == self._stamp:
            return False
        self._looked = True
        self._stamp = stamp
        turns: list[Turn] = []
        problem: str | None = None
        try:
            turns = load_turns(self.path)
        except TurnsFileError as err:
            problem = str(err)
        if problem is not None:
            # One clear line (no traceback): the file is the user's to fix.
            self.errors += 1
            _LOGGER.error(
                "Turns file %s not loaded: %s; keeping the %d scripted turn(s) pending",
                self.path,
                problem,
                self.brain.pending_turns,
            )
            return False
        self.brain.replace_pending(turns)
        self.loads += 1
        _LOGGER.info("Loaded %d turn(s) from %s", len(turns), self.path)
        return True

    def start(self) -> None:
        """Load the file now, then watch it."""
        self.check()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
