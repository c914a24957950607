"""Fault knobs a test turns on to see how the client copes with a misbehaving service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Endpoint keys the status/body/delay knobs understand.
ENDPOINTS = ("sessions", "sdp", "voices", "tts")


@dataclass
class Faults:
    """Faults the emulator injects; each test builds its own emulator, so they reset."""

    # Endpoint key -> HTTP status to answer instead of doing the real work.
    status: dict[str, int] = field(default_factory=dict)
    # Endpoint key -> JSON body for that faulty status (a default body otherwise).
    body: dict[str, Any] = field(default_factory=dict)
    # Retry-After header sent with an injected 429 (seconds, or any text: a service
    # may send garbage).
    retry_after: int | str | None = None
    # Endpoint key -> (3xx status, Location): a misconfigured or hostile server
    # redirecting elsewhere.
    redirect: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Endpoint key -> seconds to wait before answering.
    delay: dict[str, float] = field(default_factory=dict)
    # The SDP endpoint answers 201 with a body that is not SDP.
    malformed_sdp: bool = False
    # The SDP endpoint never answers (until the emulator stops).
    no_answer: bool = False
    # A firewall between client and service: the SDP answer comes over HTTPS, but no
    # UDP datagram (ICE, DTLS, SCTP, RTP) passes either way.
    media_blocked: bool = False
    # The data channel is closed (the peer stays up) after the first delta of a reply.
    drop_channel_mid_reply: bool = False
    # The peer connection is closed right after the data channel opens.
    close_peer_after_open: bool = False
    # Every response.done is sent twice (the duplicate with its own event_id), as a
    # buggy or hostile service might.
    repeat_response_done: bool = False
    # One more text (or audio transcript) delta of a response after its response.done.
    late_delta_after_done: bool = False
