"""Which turn owns each response, and which responses are in progress or playing.

Every ``response.*`` event names its response. A response belongs to the turn that was
waiting for one when it was created (its ``response.create``, or the service's VAD
answering its speech); a response created while no turn waited belongs to nobody. Events
of a response whose turn is over (cancelled, abandoned, or simply finished) reach nobody:
they cannot leak into the next turn.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Final

from .turns import Turn

# Responses remembered after they ended, for their late events.
_REMEMBERED: Final = 64


class Responses:
    """Owners of responses, and the service's output state, for one session."""

    def __init__(self) -> None:
        """Start with no responses."""
        self._owners: OrderedDict[str, Turn | None] = OrderedDict()
        # Created and not yet done.
        self.active: set[str] = set()
        # Whose voice the service says is playing (output_audio_buffer.*).
        self.playing: set[str] = set()
        self._unnamed_playing = False
        self._ended = asyncio.Event()

    def created(self, response_id: str, owner: Turn | None) -> None:
        """A response started, for ``owner`` (None: for nobody)."""
        self._owners[response_id] = owner
        self._owners.move_to_end(response_id)
        while len(self._owners) > _REMEMBERED:
            old, _ = self._owners.popitem(last=False)
            self.active.discard(old)
            self.playing.discard(old)
        self.active.add(response_id)

    def disown(self, response_id: str) -> None:
        """A response turned out to be nobody's."""
        if response_id in self._owners:
            self._owners[response_id] = None

    def done(self, response_id: str) -> None:
        """A response ended."""
        self.active.discard(response_id)
        self._ended.set()

    def owner(self, response_id: str | None) -> Turn | None:
        """The turn a response belongs to, whether or not it is still going on."""
        return self._owners.get(response_id) if response_id is not None else None

    def following(self, response_id: str | None) -> Turn | None:
        """The turn a response belongs to, if that turn is still going on."""
        owner = self.owner(response_id)
        return owner if owner is not None and not owner.done else None

    def producing(self, response_id: str | None) -> Turn | None:
        """The turn a response in progress belongs to, if that turn is going on."""
        if response_id not in self.active:
            return None
        return self.following(response_id)

    def audio(self, kind: str, response_id: str | None) -> None:
        """The service started, stopped or cleared a response's voice."""
        if response_id is None:
            self._unnamed_playing = kind == "started"
            if kind != "started":
                # The whole buffer drained or was cleared: nothing plays any more.
                self.playing.clear()
            return
        if kind == "started":
            self.playing.add(response_id)
        else:
            self.playing.discard(response_id)

    @property
    def speaking(self) -> bool:
        """Whether the service is playing a reply's voice."""
        return bool(self.playing) or self._unnamed_playing

    def quiet(self) -> None:
        """We cleared the output buffer: nothing plays any more."""
        self.playing.clear()
        self._unnamed_playing = False

    def of(self, turn: Turn) -> list[str]:
        """The responses of ``turn`` still in progress."""
        return [rid for rid in turn.responses if rid in self.active]

    def voice_of(self, turn: Turn) -> bool:
        """Whether the voice of one of ``turn``'s responses is playing."""
        return any(rid in self.playing for rid in turn.responses)

    def others(self, turn: Turn) -> set[str]:
        """Responses in progress that ``turn`` does not own."""
        return {rid for rid in self.active if not turn.owns(rid)}

    async def wait_none_but(self, turn: Turn) -> None:
        """Wait until no response is in progress that ``turn`` does not own."""
        while self.others(turn):
            self._ended.clear()
            await self._ended.wait()
