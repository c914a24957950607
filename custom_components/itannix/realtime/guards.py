"""Guards aiortc lacks, fitted to one peer connection.

The only module that reaches into aiortc's and aioice's internals. Each guard checks
that the hook it needs is there and reports False when it is not (a newer aiortc may
have moved it), so a missing hook costs the protection, never the session.

- ``bound_gathering``: aioice waits 5 s for every STUN and TURN server, even one that
  never answers, and aiortc offers no setting for it.
- ``contain_bad_messages``: aiortc decodes a text message as UTF-8 before any handler
  runs, and asserts that a data channel control message (RFC 8832) names a stream it
  expects; one invalid message raises inside its SCTP receive path and ends the whole
  transport. Contained, the message is reported and dropped.
- ``gate_inbound_audio``: aiortc depacketizes, buffers and decodes (in a thread of its
  own) every inbound RTP packet, whether anyone listens or not: 50 a second of the
  service's silence between turns. Gated, a packet nobody wants only feeds the
  receiver's statistics (so its RTCP reports count no false loss) and is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import inspect
from typing import Any

from aiortc import RTCPeerConnection


def _gatherers(pc: RTCPeerConnection) -> list[Any]:
    """The ICE gatherers of a peer (one per transport before bundling)."""
    dtls = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    gatherers: list[Any] = []
    for transport in dtls:
        gatherer = transport.transport.iceGatherer
        if all(gatherer is not known for known in gatherers):
            gatherers.append(gatherer)
    return gatherers


def bound_gathering(pc: RTCPeerConnection, seconds: float) -> bool:
    """Make the peer wait at most ``seconds`` for STUN and TURN candidates.

    Call before ``setLocalDescription`` (which gathers). aioice's
    ``Connection.get_component_candidates`` takes the wait as its ``timeout``.
    """
    bound = False
    for gatherer in _gatherers(pc):
        connection = getattr(gatherer, "_connection", None)
        method = getattr(connection, "get_component_candidates", None)
        if method is None:
            continue
        if isinstance(method, functools.partial):
            bound = True  # already bound
            continue
        try:
            if "timeout" not in inspect.signature(method).parameters:
                continue
        except (TypeError, ValueError):
            continue
        connection.get_component_candidates = functools.partial(  # type: ignore[union-attr]
            method, timeout=seconds
        )
        bound = True
    return bound


def candidate_types(pc: RTCPeerConnection) -> set[str]:
    """The types of the local candidates gathered ("host", "srflx", "relay")."""
    return {
        candidate.type
        for gatherer in _gatherers(pc)
        for candidate in gatherer.getLocalCandidates()
    }


def gate_inbound_audio(receiver: Any) -> Callable[[bool], None] | None:
    """Let ``receiver`` drop inbound RTP while closed; return the gate's setter.

    Open (the default), every packet takes aiortc's own path. Closed, a packet of a
    stream the receiver already counts updates that stream's statistics (the receiver
    reports of RTCP stay true: no gap, no false loss) and goes no further: no jitter
    buffer, no decoder thread, no frame queued. A packet of a stream not seen yet
    always takes the full path (it starts the statistics). SRTP is still unprotected
    before this (the transport does it), so the rollover counter never loses track.
    None when this aiortc lacks either hook.
    """
    handle = getattr(receiver, "_handle_rtp_packet", None)
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
    if not inspect.iscoroutinefunction(handle) or not isinstance(streams, dict):
        return None
    gate = {"open": True}

    async def gated(packet: Any, arrival_time_ms: int) -> None:
        if not gate["open"]:
            statistics = streams.get(packet.ssrc)
            add = getattr(statistics, "add", None)
            if add is not None:
                add(packet)
                return
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = gated  # noqa: SLF001

    def set_open(is_open: bool) -> None:
        gate["open"] = is_open

    return set_open


def contain_bad_messages(
    pc: RTCPeerConnection, on_invalid: Callable[[Exception], None]
) -> bool:
    """Drop (and report) a message aiortc fails on instead of dying of it.

    A text message that is not UTF-8 (``UnicodeDecodeError``), a control message for a
    stream aiortc does not expect (``AssertionError``): whatever aiortc's data channel
    receive raises. The connection's own handler never raises, so what reaches here is
    aiortc failing on what the peer sent. Call after ``createDataChannel`` (which
    creates the SCTP transport).
    """
    sctp = pc.sctp
    receive = getattr(sctp, "_data_channel_receive", None)
    if receive is None or not inspect.iscoroutinefunction(receive):
        return False
    if getattr(receive, "itannix_guarded", False):
        return True

    async def guarded(stream_id: int, pp_id: int, data: bytes) -> None:
        try:
            await receive(stream_id, pp_id, data)
        except Exception as err:  # noqa: BLE001 - escaping, it ends the transport
            on_invalid(err)

    guarded.itannix_guarded = True  # type: ignore[attr-defined]
    sctp._data_channel_receive = guarded  # type: ignore[union-attr,method-assign]  # noqa: SLF001
    return True


def transport_connected(pc: RTCPeerConnection | None) -> bool:
    """Whether the data channel's DTLS transport can still send.

    A data channel stays "open" for a while after its transport died (the network
    vanished, consent expired); what is sent then fails inside aiortc, in a task
    nobody awaits. True when aiortc's internals are not where this looks.
    """
    sctp = getattr(pc, "sctp", None)
    dtls = getattr(sctp, "transport", None)
    state = getattr(dtls, "state", None)
    return state is None or state == "connected"
