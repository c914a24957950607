"""The scripted "brain": what the emulated assistant hears and answers, turn by turn."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import secrets
from typing import Any

from .behaviour import function_tool

DEFAULT_AUDIO_TRANSCRIPT = "hello"
DEFAULT_AUDIO_REPLY = "Hello from ItanniX."
DEFAULT_AFTER_TOOLS_REPLY = "Done."


def new_call_id() -> str:
    """Return a fresh function call id in the service's style."""
    return f"call_{secrets.token_hex(8)}"


@dataclass
class FunctionCallSpec:
    """A function call the assistant makes within a response."""

    name: str
    arguments: str = "{}"
    # Fixed call id for assertions; a fresh one per call when None.
    call_id: str | None = None


@dataclass
class Turn:
    """One scripted exchange: what matches it, and what the assistant answers."""

    # Typed user text this turn answers (None = any text, and audio turns).
    user_text: str | None = None
    # What the emulator "heard" when the turn comes from audio.
    transcript: str | None = None
    reply: str = ""
    function_calls: list[FunctionCallSpec] = field(default_factory=list)
    # Reply once every call has its output; "{name}" becomes that call's output.
    reply_after_tools: str | None = None
    # Register each call's name as a dashboard tool (so the assistant may call it).
    dashboard_tools: bool = True
    # The input transcription fails with this message (the model still answers).
    transcription_error: str | None = None
    # response.done status: "completed", "failed" or "incomplete"; status_details
    # replaces the default details of that status.
    status: str = "completed"
    status_details: dict[str, Any] | None = None

    def matches_text(self, text: str) -> bool:
        """Return True when this turn answers the typed ``text``."""
        if self.user_text is None:
            return True
        return _normalize(self.user_text) == _normalize(text)


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


class ScriptedBrain:
    """A queue of turns for one assistant id, consumed in order."""

    def __init__(self, assistant_id: str) -> None:
        """Create an empty brain for ``assistant_id``."""
        self.assistant_id = assistant_id
        self._turns: deque[Turn] = deque()
        # Dashboard tools registered by scripted calls (new sessions carry them).
        self.tools: list[dict[str, Any]] = []

    def add_turn(self, turn: Turn) -> None:
        """Queue a turn after those already scripted; register its calls as tools."""
        self._turns.append(turn)
        if turn.dashboard_tools:
            names = {tool.get("name") for tool in self.tools}
            for spec in turn.function_calls:
                if spec.name not in names:
                    self.tools.append(function_tool(spec.name))
                    names.add(spec.name)

    def replace_pending(self, turns: list[Turn]) -> None:
        """Replace the turns not yet consumed with ``turns`` (in order).

        The registered dashboard tools become those of ``turns``.
        """
        self._turns.clear()
        self.tools.clear()
        for turn in turns:
            self.add_turn(turn)

    @property
    def pending_turns(self) -> int:
        """Number of scripted turns not yet consumed."""
        return len(self._turns)

    def next_text_turn(self, text: str) -> Turn:
        """Consume the first queued turn matching typed ``text`` (a default otherwise)."""
        for turn in self._turns:
            if turn.matches_text(text):
                self._turns.remove(turn)
                return turn
        return Turn(user_text=text, reply=f"I heard: {text}")

    def next_audio_turn(self) -> Turn:
        """Consume the first queued turn for speech (a default when none is left)."""
        for turn in self._turns:
            if turn.user_text is None:
                self._turns.remove(turn)
                if turn.transcript is None:
                    turn.transcript = DEFAULT_AUDIO_TRANSCRIPT
                return turn
        return Turn(transcript=DEFAULT_AUDIO_TRANSCRIPT, reply=DEFAULT_AUDIO_REPLY)
