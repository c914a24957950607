"""When a spoken turn's reply voice ends: one decision, made in one place.

Over WebRTC the service generates a reply faster than it plays it: ``response.done``
comes while the voice still streams, so the voice cannot end there. Once every response
of the turn is done, its voice ends:

1. when the service says so: ``output_audio_buffer.stopped`` for every response it said
   had ``started`` (then ``drain`` more, for the frames still in flight), or
   ``output_audio_buffer.cleared`` (at once);
2. failing that, when the inbound track has gone quiet: nothing voiced for
   ``QUIET_SECONDS`` when the service never said the voice started (it sends no
   ``output_audio_buffer.*`` events), or for ``LOST_SECONDS`` when it said started but
   never stopped (its stop was lost; a pause in speech is far shorter). Quiet means no
   voiced audio, not no packets: the service sends silence 50 times a second when idle;
3. in any case at most ``CAP_SECONDS`` plus ``CAP_PER_CHARACTER`` per character of the
   reply's transcript after its last ``response.done``: longer than those words take to
   say, so that a track that never goes quiet cannot hold the turn for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .audio import AudioSubscription

_LOGGER = logging.getLogger(__name__)

# No output_audio_buffer events: the voice ended once nothing voiced came for this long
# (longer than the pause between two sentences, about 0.35 s).
QUIET_SECONDS: Final = 0.6
# Started but never stopped: the service lost track; nothing voiced for this long.
LOST_SECONDS: Final = 2.0
# The bound after the last response.done, whatever the track does: slower than anyone
# speaks (4 characters a second), plus a margin.
CAP_SECONDS: Final = 10.0
CAP_PER_CHARACTER: Final = 0.25


class VoiceEnd:
    """Ends one turn's reply voice (``end``) when the rules above say it ended."""

    def __init__(
        self, audio: AudioSubscription, *, drain: float, end: Callable[[], None]
    ) -> None:
        """Watch ``audio`` (the turn's subscription); call ``end`` once, at its end."""
        self._audio = audio
        self._drain = drain
        self._end = end
        self._loop = asyncio.get_running_loop()
        self._started: set[str] = set()  # the service said these started, ever
        self._playing: set[str] = set()  # ...and has not said they stopped
        self._done_at: float | None = None  # the last response.done, while all done
        self._settled_at = 0.0  # when the last voice said playing stopped
        self._cap = CAP_SECONDS
        self._timer: asyncio.TimerHandle | None = None
        self._ended = False
        # How the voice ended: stopped, cleared, quiet, lost or cap.
        self.reason: str | None = None

    # what the service says

    def started(self, response_id: str) -> None:
        """``output_audio_buffer.started`` for one of the turn's responses."""
        self._started.add(response_id)
        self._playing.add(response_id)
        self._reschedule()

    def stopped(self, response_id: str) -> None:
        """``output_audio_buffer.stopped`` for one of the turn's responses."""
        if response_id in self._playing:
            self._playing.discard(response_id)
            self._settled_at = self._loop.time()
        self._reschedule()

    def cleared(self) -> None:
        """``output_audio_buffer.cleared``: what played stops now."""
        self._finish("cleared")

    def responses_done(self, transcript_chars: int) -> None:
        """The turn's last response is done; its transcript has that many characters."""
        self._done_at = self._loop.time()
        self._cap = CAP_SECONDS + CAP_PER_CHARACTER * transcript_chars
        self._reschedule()

    def responses_resumed(self) -> None:
        """Another response of the turn started: its voice is not over."""
        self._done_at = None
        self._cancel_timer()

    def cancel(self) -> None:
        """The voice ended otherwise: stop watching."""
        self._ended = True
        self._cancel_timer()

    # deciding

    def _deadline(self) -> tuple[float, str]:
        """When the voice ends, as things stand, and why."""
        assert self._done_at is not None
        cap = (self._done_at + self._cap, "cap")
        if self._started and not self._playing:
            settled = max(self._done_at, self._settled_at)
            return min((settled + self._drain, "stopped"), cap)
        quiet, reason = (
            (LOST_SECONDS, "lost") if self._playing else (QUIET_SECONDS, "quiet")
        )
        since = max(self._done_at, self._audio.last_voiced or 0.0)
        return min((since + quiet, reason), cap)

    def _reschedule(self) -> None:
        if self._ended or self._done_at is None:
            return
        self._cancel_timer()
        when, _ = self._deadline()
        self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._ended or self._done_at is None:
            return
        when, reason = self._deadline()
        if self._loop.time() >= when:
            self._finish(reason)
        else:
            # Voiced audio came since: look again when it may have gone quiet.
            self._timer = self._loop.call_at(when, self._check)

    def _finish(self, reason: str) -> None:
        if self._ended:
            return
        self.cancel()
        self.reason = reason
        _LOGGER.debug("The reply's voice ended (%s)", reason)
        self._end()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
