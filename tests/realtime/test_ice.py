"""Sanitising the service's ICE servers for aiortc."""

from __future__ import annotations

from aiortc import RTCIceServer

from custom_components.itannix.realtime import (
    IceServer,
    build_rtc_configuration,
    sanitize_ice_servers,
)
from custom_components.itannix.realtime.client import parse_ice_servers


def test_no_servers_gives_explicit_empty_list() -> None:
    """An empty list, never None: aiortc would fall back to a public STUN server."""
    config = build_rtc_configuration([])
    assert config.iceServers == []


def test_keeps_one_stun_and_best_turn_with_credentials() -> None:
    servers = [
        IceServer(("stun:stun.example.net:3478", "stun:other.example.net")),
        IceServer(("turns:relay.example.net:443?transport=tcp",), "u1", "p1"),
        IceServer(
            (
                "turn:relay.example.net:3478?transport=tcp",
                "turn:relay.example.net:3478?transport=udp",
            ),
            "u2",
            "p2",
        ),
    ]
    assert sanitize_ice_servers(servers) == [
        RTCIceServer(urls=["stun:stun.example.net:3478"]),
        RTCIceServer(
            urls=["turn:relay.example.net:3478?transport=udp"],
            username="u2",
            credential="p2",
        ),
    ]


def test_prefers_tcp_turn_over_tls_when_no_udp() -> None:
    servers = [
        IceServer(("turns:relay.example.net:443",), "u", "p"),
        IceServer(("turn:relay.example.net:80?transport=tcp",), "u", "p"),
    ]
    assert [s.urls for s in sanitize_ice_servers(servers)] == [
        ["turn:relay.example.net:80?transport=tcp"]
    ]


def test_turns_kept_when_it_is_the_only_relay() -> None:
    servers = [IceServer(("turns:relay.example.net:443",), "u", "p")]
    assert sanitize_ice_servers(servers) == [
        RTCIceServer(urls=["turns:relay.example.net:443"], username="u", credential="p")
    ]


def test_drops_malformed_and_unusable_entries() -> None:
    servers = [
        IceServer(("turn:relay.example.net:3478",)),  # no credentials
        IceServer(("turn:relay.example.net:3478?transport=sctp",), "u", "p"),
        IceServer(("turns:relay.example.net:443?transport=udp",), "u", "p"),
        IceServer(("stun:host:notaport",)),
        IceServer(("stuns:stun.example.net",)),  # aiortc ignores stuns
        IceServer(("https://example.net",)),
        IceServer(("",)),
    ]
    assert sanitize_ice_servers(servers) == []


def test_parse_tolerates_urls_string_or_list_and_junk() -> None:
    parsed = parse_ice_servers(
        [
            {"urls": "stun:a.example.net"},
            {
                "urls": ["turn:b.example.net"],
                "username": "u",
                "credential": "sekrit-cred",
            },
            {"urls": 5},
            "junk",
            {"urls": []},
            {"username": "x"},
        ]
    )
    assert parsed == [
        IceServer(("stun:a.example.net",)),
        IceServer(("turn:b.example.net",), "u", "sekrit-cred"),
    ]
    assert parse_ice_servers(None) == []
    assert "sekrit-cred" not in repr(parsed[1])
