"""The scripted "brain": what the emulated assistant hears and answers, turn by turn."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import secrets

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

    def add_turn(self, turn: Turn) -> None:
        """Queue a turn after those already scripted."""
        self._turns.append(turn)

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
