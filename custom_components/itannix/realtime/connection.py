"""One realtime connection: an aiortc peer, its data channel and audio tracks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Final, Self

from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from .audio import MicrophoneTrack, SpeakerSink
from .errors import CannotConnectError, ConnectFailure, ItanniXError, ProtocolError
from .events import SESSION_UPDATE, Event
from .guards import (
    bound_gathering,
    candidate_types,
    contain_bad_messages,
    gate_inbound_audio,
    transport_connected,
)
from .ice import GATHER_TIMEOUT, build_rtc_configuration, select_ice_servers
from .logs import OnceLogger

if TYPE_CHECKING:
    from types import TracebackType

    from .client import ItanniXClient, SessionInfo

_LOGGER = logging.getLogger(__name__)

DEFAULT_CHANNEL_LABEL: Final = "messages"
DEFAULT_TRANSCRIPTION_MODEL: Final = "gpt-4o-mini-transcribe"

type EventListener = Callable[[Event], None]
type CloseListener = Callable[[ItanniXError | None], None]

_END: Final = object()


class EventStream:
    """The connection's events for one consumer, from the moment it subscribed.

    Iteration ends when the stream or the connection is closed; when the connection
    dropped (rather than being closed by us) it raises the reason instead.
    """

    def __init__(self, connection: RealtimeConnection) -> None:
        """Initialize; use ``RealtimeConnection.events()``."""
        self._connection = connection
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reason: ItanniXError | None = None
        self._ended = False

    def put(self, event: Event) -> None:
        """Add an event (called by the connection)."""
        if not self._ended:
            self._queue.put_nowait(event)

    def end(self, reason: ItanniXError | None = None) -> None:
        """End the stream after what is queued."""
        if self._ended:
            return
        self._ended = True
        self._reason = reason
        self._queue.put_nowait(_END)

    def close(self) -> None:
        """Stop receiving events."""
        self._connection.remove_stream(self)
        self.end()

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the stream."""
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        """Return self."""
        return self

    async def __anext__(self) -> Event:
        """Return the next event."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)
            if self._reason is not None:
                raise self._reason
            raise StopAsyncIteration
        event: Event = item
        return event

    async def next_of(self, types: Iterable[str], seconds: float) -> Event:
        """Return the next event whose type is in ``types``, within ``seconds``."""
        wanted = set(types)
        async with asyncio.timeout(seconds):
            async for event in self:
                if event.get("type") in wanted:
                    return event
        raise CannotConnectError("The connection closed")


class RealtimeConnection:
    """A WebRTC connection to an ItanniX assistant.

    ``connect()`` creates a session, offers a peer with an audio track (the service
    refuses offers without one) and the ordered data channel, and waits for the channel
    to open. Events arrive as dicts to listeners and streams; ``close()`` releases every
    task, track and transport, whatever state the connection is in.
    """

    def __init__(
        self,
        client: ItanniXClient,
        *,
        channel_label: str = DEFAULT_CHANNEL_LABEL,
        input_transcription_model: str | None = None,
        modalities: Iterable[str] = ("text", "audio"),
        connect_timeout: float = 15.0,
        send_timeout: float = 5.0,
        microphone_rate: int = 16_000,
        speaker_rate: int = 16_000,
        receive_audio: bool = True,
    ) -> None:
        """Initialize; nothing happens on the network before ``connect()``.

        ``receive_audio=False`` offers the microphone send-only: the service sends no
        audio back, which a typed conversation does not need and an open session
        would otherwise receive (and decode) 50 times a second.
        """
        self._client = client
        self.receive_audio = receive_audio
        self._channel_label = channel_label
        self._transcription_model = input_transcription_model
        self.modalities: tuple[str, ...] = tuple(modalities)
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self.microphone = MicrophoneTrack(input_rate=microphone_rate)
        self.speaker = SpeakerSink(rate=speaker_rate, on_demand=self._on_audio_demand)
        # Drops inbound audio nobody listens to before aiortc decodes it (guards.py).
        self._audio_gate: Callable[[bool], None] | None = None
        self.session_info: SessionInfo | None = None
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._open = False
        self._closed = False
        self._close_reason: ItanniXError | None = None
        self._state_changed = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._listeners: list[EventListener] = []
        self._close_listeners: list[CloseListener] = []
        self._streams: list[EventStream] = []
        self._shutdown_task: asyncio.Task[None] | None = None
        # Junk on the data channel: the first of each kind is a warning, the rest debug.
        self._junk = OnceLogger(_LOGGER)

    async def __aenter__(self) -> Self:
        """Connect."""
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""
        await self.close()

    @property
    def client(self) -> ItanniXClient:
        """The HTTP client used to set the connection up."""
        return self._client

    @property
    def is_open(self) -> bool:
        """Whether the data channel is open and the connection not closed."""
        return self._open and not self._closed

    @property
    def closed(self) -> bool:
        """Whether the connection was closed or dropped."""
        return self._closed

    @property
    def close_reason(self) -> ItanniXError | None:
        """Why the connection dropped; None while open or when closed by us."""
        return self._close_reason

    @property
    def transcribes(self) -> bool:
        """Whether the service is asked to transcribe the user's audio."""
        return bool(self._transcription_model)

    @property
    def microphone_attached(self) -> bool:
        """Whether the microphone is sending (not paused between turns)."""
        return not self.microphone.paused

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The underlying peer connection (for diagnostics)."""
        return self._pc

    async def connect(self) -> None:
        """Set the connection up; raise an ItanniXError on any failure."""
        if self._pc is not None or self._closed:
            raise RuntimeError("A connection can only be connected once")
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._connect()
        except TimeoutError:
            # Maybe the network needed a STUN or TURN server left out as silent.
            self._client.ice_health.reset()
            error = self._timeout_error()
            await self._abort(error)
            raise error from None
        except ItanniXError as err:
            await self._abort(err)
            raise
        except asyncio.CancelledError:
            await self._abort(CannotConnectError("Connecting was cancelled"))
            raise
        except Exception as err:
            error = CannotConnectError(f"WebRTC set-up failed: {type(err).__name__}")
            await self._abort(error)
            raise error from err

    async def _connect(self) -> None:
        info = await self._client.create_session(self.modalities)
        self.session_info = info
        self._raise_if_closed()
        servers = self._ice_servers(info)
        pc = RTCPeerConnection(configuration=build_rtc_configuration(servers))
        self._pc = pc
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("track", self._on_track)
        direction = "sendrecv" if self.receive_audio else "sendonly"
        transceiver = pc.addTransceiver(self.microphone, direction=direction)
        if self.receive_audio:
            self._audio_gate = gate_inbound_audio(transceiver.receiver)
            if self._audio_gate is None:
                _LOGGER.debug("This aiortc decodes inbound audio nobody listens to")
        channel = pc.createDataChannel(self._channel_label, ordered=True)
        self._channel = channel
        channel.on("open", self._on_channel_open)
        channel.on("close", self._on_channel_close)
        channel.on("message", self._on_message)
        if not contain_bad_messages(pc, self._on_bad_message):
            _LOGGER.debug("This aiortc cannot be guarded against invalid text")
        bound_gathering(pc, GATHER_TIMEOUT)
        # Non-trickle: this completes ICE gathering, so the SDP carries the candidates.
        await pc.setLocalDescription(await pc.createOffer())
        for url in self._client.ice_health.record(servers, candidate_types(pc)):
            self._client.log_once.warning(
                ("ice-silent", url),
                "ICE server %s gave no candidate within %s s; leaving it out for a while",
                url,
                GATHER_TIMEOUT,
            )
        self._raise_if_closed()
        answer = await self._client.exchange_sdp(pc.localDescription.sdp)
        self._raise_if_closed()
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=answer, type="answer")
            )
        except (ValueError, TypeError, KeyError, IndexError) as err:
            raise ProtocolError("The service's SDP answer could not be used") from err
        await self._wait_open()
        if self._transcription_model:
            await self.send(
                {
                    "type": SESSION_UPDATE,
                    "session": {
                        "input_audio_transcription": {
                            "model": self._transcription_model
                        }
                    },
                }
            )

    def _timeout_error(self) -> CannotConnectError:
        """Why connecting timed out: the HTTP exchange, or the media path after it."""
        host = self._client.host
        if self._pc is not None and self._pc.remoteDescription is not None:
            # The server answered the offer over HTTPS: what never came is the WebRTC
            # path itself (UDP blocked, no usable TURN relay).
            return CannotConnectError(
                f"{host} answered, but the WebRTC connection did not open",
                reason=ConnectFailure.MEDIA,
                host=host,
            )
        return CannotConnectError(
            "Timed out connecting to ItanniX", reason=ConnectFailure.TIMEOUT, host=host
        )

    def _ice_servers(self, info: SessionInfo) -> list[RTCIceServer]:
        """The session's usable ICE servers, minus those known not to answer."""
        selection = select_ice_servers(info.ice_servers)
        for url, problem in selection.rejected:
            self._client.log_once.warning(
                ("ice-unusable", url), "Ignoring ICE server %s: %s", url, problem
            )
        return self._client.ice_health.usable(selection.servers)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise self._close_reason or CannotConnectError("The connection was closed")

    async def _wait_open(self) -> None:
        while not self._open and not self._closed:
            self._state_changed.clear()
            await self._state_changed.wait()
        self._raise_if_closed()

    async def _abort(self, reason: ItanniXError) -> None:
        self._mark_closed(reason)
        await self._await_shutdown()

    # aiortc callbacks

    def _on_connection_state(self) -> None:
        assert self._pc is not None
        state = self._pc.connectionState
        _LOGGER.debug("Peer connection state: %s", state)
        if state in ("failed", "closed"):
            # Before the channel opened, it is the media path that failed.
            reason = ConnectFailure.DROPPED if self._open else ConnectFailure.MEDIA
            self._mark_closed(
                CannotConnectError(f"The WebRTC connection {state}", reason=reason)
            )

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.speaker.start(track)

    def _on_audio_demand(self, wanted: bool) -> None:
        # Between turns nobody listens: the service's silence is counted, not decoded.
        if self._audio_gate is not None:
            self._audio_gate(wanted)

    def _on_channel_open(self) -> None:
        self._open = True
        self._state_changed.set()

    def _on_channel_close(self) -> None:
        self._mark_closed(
            CannotConnectError("The data channel closed", reason=ConnectFailure.DROPPED)
        )

    def _on_message(self, message: str | bytes) -> None:
        # Called from aiortc's SCTP receive path: an exception escaping here would end
        # the whole transport, so nothing may, whatever the message holds.
        try:
            event = self._parse(message)
            if event is not None:
                self._dispatch(event)
        except Exception:  # noqa: BLE001 - see above
            self._junk.warning(
                "handler", "Error handling a realtime event", exc_info=True
            )

    def _parse(self, message: str | bytes) -> Event | None:
        try:
            event = json.loads(message)
        except RecursionError:
            self._junk.warning(
                "nested", "Ignoring a data channel message nested too deeply"
            )
            return None
        except ValueError:
            self._junk.warning(
                "json", "Ignoring a data channel message that is not JSON"
            )
            return None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._junk.warning("type", "Ignoring a data channel message without a type")
            return None
        return event

    def _on_bad_message(self, err: Exception) -> None:
        if isinstance(err, UnicodeDecodeError):
            self._junk.warning(
                "utf8", "Ignoring a data channel text message that is not UTF-8"
            )
        else:
            self._junk.warning(
                ("control", type(err).__name__),
                "Ignoring a data channel message WebRTC could not handle (%s)",
                type(err).__name__,
            )

    def _dispatch(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one bad event must not end the session
                self._junk.warning(
                    "listener", "Error in a realtime event listener", exc_info=True
                )
        for stream in list(self._streams):
            stream.put(event)

    # subscriptions

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event; return a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def add_close_listener(self, listener: CloseListener) -> Callable[[], None]:
        """Call ``listener`` once when the connection closes (with the reason)."""
        self._close_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._close_listeners.remove(listener)

        return remove

    def events(self) -> EventStream:
        """Return a stream of the events from now on (close it, or use ``with``)."""
        stream = EventStream(self)
        if self._closed:
            stream.end(self._close_reason)
        else:
            self._streams.append(stream)
        return stream

    def remove_stream(self, stream: EventStream) -> None:
        """Stop feeding a stream."""
        with contextlib.suppress(ValueError):
            self._streams.remove(stream)

    # sending

    async def send(self, event: Event) -> None:
        """Send a client event; wait (bounded) for the channel to open."""
        if not self._open and not self._closed:
            try:
                async with asyncio.timeout(self._send_timeout):
                    await self._wait_open()
            except TimeoutError:
                raise CannotConnectError("The data channel did not open") from None
        self._raise_if_closed()
        assert self._channel is not None
        if not transport_connected(self._pc):
            # aiortc would queue it and fail in a task nobody awaits: the network is
            # gone, though the peer has not noticed yet.
            error = CannotConnectError(
                "The connection was lost", reason=ConnectFailure.DROPPED
            )
            self._mark_closed(error)
            raise error
        try:
            self._channel.send(json.dumps(event))
        except Exception as err:
            raise CannotConnectError("Could not send on the data channel") from err

    # microphone

    def detach_microphone(self) -> None:
        """Pause the microphone: an idle session encodes and sends nothing.

        The paused track makes aiortc's sender wait instead of polling every 20 ms,
        so an idle session costs the event loop nothing on the way out.
        """
        self.microphone.pause()

    def attach_microphone(self) -> None:
        """Resume the microphone: audio flows again, paced from now."""
        self.microphone.resume()

    # closing

    def _mark_closed(self, reason: ItanniXError | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        if reason is not None:
            _LOGGER.debug("Realtime connection closed: %s", reason)
        self._state_changed.set()
        self._closed_event.set()
        for stream in self._streams:
            stream.end(reason)
        self._streams.clear()
        for listener in list(self._close_listeners):
            try:
                listener(reason)
            except Exception:
                _LOGGER.exception("Error in a realtime close listener")
        self._close_listeners.clear()
        self._listeners.clear()
        self._shutdown_task = asyncio.get_running_loop().create_task(
            self._shutdown(), name="itannix-connection-shutdown"
        )

    async def _shutdown(self) -> None:
        await self.speaker.stop()
        self.microphone.stop()
        # Not the data channel's own close(): on a transport that is already dead it
        # queues a stream reset that fails in a task nobody awaits. Closing the peer
        # ends the channel too.
        if self._pc is not None:
            try:
                await self._pc.close()
            except Exception:
                _LOGGER.exception("Error closing the peer connection")

    async def _await_shutdown(self) -> None:
        if self._shutdown_task is not None:
            # Shield: a caller cancelled mid-close must not leave the peer half open.
            await asyncio.shield(self._shutdown_task)

    def fail(self, reason: ItanniXError) -> None:
        """End the connection because of ``reason`` (it becomes the close reason)."""
        self._mark_closed(reason)

    async def wait_closed(self) -> ItanniXError | None:
        """Wait until the connection closes; return why it dropped (None: closed)."""
        await self._closed_event.wait()
        await self._await_shutdown()
        return self._close_reason

    async def close(self) -> None:
        """Close everything; idempotent."""
        self._mark_closed(None)
        await self._await_shutdown()
