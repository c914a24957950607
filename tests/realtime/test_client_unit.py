"""URL rules, credentials hygiene and error-body parsing (no network)."""

from __future__ import annotations

import aiohttp
import pytest

from custom_components.itannix.realtime import (
    Credentials,
    InvalidUrlError,
    ItanniXClient,
    ProtocolError,
    validate_base_url,
)
from custom_components.itannix.realtime.client import (
    _parse_error_body,
    parse_retry_after,
)

SECRET = "s" * 40


@pytest.mark.parametrize(
    "url",
    [
        "https://api.itannix.com",
        "https://api.itannix.com/",
        "https://10.0.0.5:8443",
        "http://127.0.0.1:8080",
        "http://127.5.6.7",
        "http://localhost:9000",
        "http://[::1]:9000",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert validate_base_url(url).host


@pytest.mark.parametrize(
    "url",
    [
        "http://api.itannix.com",
        "http://192.168.1.10:8080",
        "http://[fe80::1]",
        "ftp://api.itannix.com",
        "ws://127.0.0.1",
        "api.itannix.com",
        "https://",
        "",
    ],
)
def test_rejected_urls(url: str) -> None:
    with pytest.raises(InvalidUrlError):
        validate_base_url(url)


async def test_client_refuses_plain_http_to_remote_host() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(InvalidUrlError):
            ItanniXClient(session, "http://example.com", Credentials("id", SECRET))


async def test_fetch_audio_applies_url_rule() -> None:
    async with aiohttp.ClientSession() as session:
        client = ItanniXClient(
            session, "https://example.com", Credentials("id", SECRET)
        )
        with pytest.raises(ProtocolError, match="not an address allowed"):
            await client.fetch_audio("http://example.com/audio.wav")


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials("client-1", SECRET, workspace_key="wk-very-secret")
    text = repr(creds)
    assert "client-1" in text
    assert SECRET not in text
    assert "wk-very-secret" not in text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"message": "Invalid workspace key", "hint": "Check Settings"}',
            ("Invalid workspace key", "Check Settings", None),
        ),
        (
            '{"detail": {"error": "Voice not found", "code": "VOICE_NOT_FOUND"}}',
            ("Voice not found", None, "VOICE_NOT_FOUND"),
        ),
        ('{"detail": "Not Found"}', ("Not Found", None, None)),
        (
            '{"error": {"message": "Bad thing", "code": "bad"}}',
            ("Bad thing", None, "bad"),
        ),
        ("Service Unavailable", ("Service Unavailable", None, None)),
        ("", (None, None, None)),
        ("[1, 2]", ("[1, 2]", None, None)),
    ],
)
def test_error_bodies(body: str, expected: tuple[str | None, ...]) -> None:
    assert _parse_error_body(body) == expected


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    # An HTTP date in the past means "now".
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "inf",
        "-inf",
        "nan",
        "1e400",
        "99999999999999999999",
        "3601",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 01 Jan 2124 00:00:00 GMT",
        "Wed, 99 Foo 2015 07:28:00 GMT",
    ],
)
def test_retry_after_not_believed(value: str) -> None:
    """Absurd waits are not passed on to the user ("try again in inf s")."""
    assert parse_retry_after(value) is None


def test_retry_after_bounded_values() -> None:
    assert parse_retry_after("3600") == 3600.0
    assert parse_retry_after("-5") == 0.0
