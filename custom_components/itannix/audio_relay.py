"""The assistant's voice for media players, served by Home Assistant's HTTP server.

A media player fetches a URL; the live reply is a stream only this process has. The relay
hands out signed, short-lived, single-use URLs for such streams.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import timedelta
import secrets
from typing import Any, Final

from aiohttp import web
from homeassistant.components.http.auth import async_sign_path
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.http import HomeAssistantView
from homeassistant.helpers.network import get_url
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN, LOGGER

URL_PATH: Final = "/api/itannix/audio/{token}"
# Long enough for a player to be told and to connect; the reply is live, so no longer.
URL_LIFETIME: Final = timedelta(seconds=60)
DATA_RELAY: HassKey[AudioRelay] = HassKey(f"{DOMAIN}_audio_relay")


@dataclass(slots=True)
class _Stream:
    audio: Callable[[], AsyncGenerator[bytes]]
    content_type: str
    on_unused: Callable[[], None]
    cancel_expiry: CALLBACK_TYPE | None = None


class AudioRelay:
    """Streams waiting for a media player to fetch them."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Initialize (use ``async_get_relay``)."""
        self._hass = hass
        self._streams: dict[str, _Stream] = {}

    @callback
    def async_register(
        self,
        audio: Callable[[], AsyncGenerator[bytes]],
        content_type: str,
        on_unused: Callable[[], None],
    ) -> str:
        """Return a signed absolute URL that serves ``audio()`` once."""
        token = secrets.token_urlsafe(16)
        stream = _Stream(audio, content_type, on_unused)
        self._streams[token] = stream

        @callback
        def _expired(_now: Any) -> None:
            if self._streams.pop(token, None) is not None:
                LOGGER.debug("Nobody fetched the reply's audio in time")
                stream.on_unused()

        stream.cancel_expiry = async_call_later(
            self._hass, URL_LIFETIME.total_seconds(), _expired
        )
        path = async_sign_path(self._hass, URL_PATH.format(token=token), URL_LIFETIME)
        return f"{get_url(self._hass, allow_external=False)}{path}"

    @callback
    def async_take(self, token: str) -> _Stream | None:
        """The stream for a token, once."""
        stream = self._streams.pop(token, None)
        if stream is not None and stream.cancel_expiry is not None:
            stream.cancel_expiry()
        return stream

    @callback
    def async_shutdown(self, _event: Event | None = None) -> None:
        """Drop every waiting stream."""
        for token in list(self._streams):
            if (stream := self.async_take(token)) is not None:
                stream.on_unused()


class AudioRelayView(HomeAssistantView):
    """Serves relayed audio to whoever holds the signed URL."""

    url = URL_PATH
    name = "api:itannix:audio"
    requires_auth = True  # satisfied by the URL's signature

    def __init__(self, relay: AudioRelay) -> None:
        """Initialize with the relay."""
        self._relay = relay

    async def get(self, request: web.Request, token: str) -> web.StreamResponse:
        """Stream the audio as it arrives."""
        if (stream := self._relay.async_take(token)) is None:
            raise web.HTTPNotFound
        response = web.StreamResponse(headers={"Content-Type": stream.content_type})
        await response.prepare(request)
        async for chunk in stream.audio():
            await response.write(chunk)
        await response.write_eof()
        return response


@callback
def async_setup_relay(hass: HomeAssistant) -> None:
    """Create the relay and its view.

    At integration set-up: the web server may take no new routes later.
    """
    relay = hass.data[DATA_RELAY] = AudioRelay(hass)
    hass.http.register_view(AudioRelayView(relay))
    hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, relay.async_shutdown)


@callback
def async_get_relay(hass: HomeAssistant) -> AudioRelay:
    """The relay of this Home Assistant."""
    return hass.data[DATA_RELAY]
