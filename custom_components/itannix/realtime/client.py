"""HTTP client for the ItanniX realtime and REST endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
import ipaddress
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from yarl import URL

from .errors import (
    AuthenticationError,
    BadRequestError,
    CannotConnectError,
    InvalidUrlError,
    ItanniXError,
    ProtocolError,
    RateLimitedError,
    ServerError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_LOGGER = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://api.itannix.com"
DEFAULT_APP_SOURCE: Final = "home-assistant"
MAX_TTS_CHARS: Final = 15_000
# Error bodies are shown to users: keep them readable, and never read a huge page whole.
_MAX_ERROR_TEXT: Final = 300
_REDACTED: Final = "**REDACTED**"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What identifies and authenticates one client (device) with ItanniX."""

    client_id: str
    client_secret: str = field(repr=False)
    workspace_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IceServer:
    """One ICE server as the sessions endpoint returned it."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The answer of the sessions endpoint."""

    id: str
    ice_servers: list[IceServer]


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice of the workspace (REST API)."""

    voice_id: str
    name: str
    category: str | None = None
    preview_url: str | None = None


@dataclass(frozen=True, slots=True)
class SynthesizedSpeech:
    """A text-to-speech result: a signed URL to fetch the audio from."""

    audio_url: str
    expires_in: float | None
    alignment: Mapping[str, Any] | None = None


def validate_base_url(url: str) -> URL:
    """Return the parsed URL, or raise InvalidUrlError.

    HTTPS is accepted anywhere; plain HTTP only to this machine (a loopback IP literal or
    "localhost"), so credentials never cross a network in clear text.
    """
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as err:
        raise InvalidUrlError("The URL is not valid") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidUrlError("The URL must start with https:// and name a host")
    if parsed.scheme == "http" and not _is_loopback_host(parsed.host):
        raise InvalidUrlError(
            "Plain http:// is only allowed to this machine; use https://",
            hint="Use an https:// URL, or http://127.0.0.1 for a local emulator",
        )
    return parsed


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_ice_servers(value: Any) -> list[IceServer]:
    """Parse the ``iceServers`` list of a sessions answer, skipping malformed entries."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError("The session's iceServers is not a list")
    servers: list[IceServer] = []
    for entry in value:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls", entry.get("url"))
        url_list: tuple[str, ...]
        if isinstance(urls, str):
            url_list = (urls,)
        elif isinstance(urls, list):
            url_list = tuple(u for u in urls if isinstance(u, str) and u)
        else:
            continue
        if not url_list:
            continue
        username = entry.get("username")
        credential = entry.get("credential")
        servers.append(
            IceServer(
                urls=url_list,
                username=username if isinstance(username, str) else None,
                credential=credential if isinstance(credential, str) else None,
            )
        )
    return servers


class ItanniXClient:
    """Talks HTTP to ItanniX: realtime sessions, SDP exchange and the REST API.

    The aiohttp session belongs to the caller (Home Assistant's shared one); this class
    never closes it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        credentials: Credentials,
        *,
        assistant_id: str | None = None,
        app_source: str = DEFAULT_APP_SOURCE,
        timeout: float = 10.0,
    ) -> None:
        """Initialize the client; raise InvalidUrlError for an unacceptable URL."""
        self._session = session
        self._base = validate_base_url(base_url.rstrip("/"))
        self._credentials = credentials
        self._assistant_id = assistant_id
        self._app_source = app_source
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        """Return a representation without the secrets."""
        return f"ItanniXClient(base_url={str(self._base)!r}, client_id={self._credentials.client_id!r})"

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return str(self._base)

    @property
    def credentials(self) -> Credentials:
        """The credentials this client authenticates with."""
        return self._credentials

    @property
    def assistant_id(self) -> str | None:
        """The assistant requested with X-Assistant-Id, if any."""
        return self._assistant_id

    def _headers(self) -> dict[str, str]:
        creds = self._credentials
        headers = {
            "X-Client-Id": creds.client_id,
            "X-Client-Secret": creds.client_secret,
        }
        if creds.workspace_key:
            headers["X-Workspace-Key"] = creds.workspace_key
        if self._assistant_id:
            headers["X-Assistant-Id"] = self._assistant_id
        if self._app_source:
            headers["X-App-Source"] = self._app_source
        return headers

    async def create_session(
        self, modalities: Iterable[str] = ("text", "audio")
    ) -> SessionInfo:
        """Create a realtime session; return its id and ICE servers."""
        _, body, _ = await self._request(
            "POST",
            self._base / "v1/realtime/sessions",
            json_body={"modalities": list(modalities)},
            expected=(200, 201),
        )
        data = self._parse_json(body, "session")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ProtocolError("The session answer has no session id")
        return SessionInfo(
            id=data["id"], ice_servers=parse_ice_servers(data.get("iceServers"))
        )

    async def exchange_sdp(self, offer_sdp: str) -> str:
        """Send our SDP offer, return the service's SDP answer."""
        _, body, _ = await self._request(
            "POST",
            self._base / "v1/realtime",
            data=offer_sdp,
            content_type="application/sdp",
            expected=(200, 201),
        )
        answer = body.lstrip("\ufeff")
        if not answer.lstrip().startswith("v=0"):
            raise ProtocolError("The service's SDP answer is not SDP")
        return answer

    async def list_voices(self) -> list[Voice]:
        """Return the workspace's voices."""
        _, body, _ = await self._request("GET", self._base / "v1/app/voices")
        data = self._parse_json(body, "voices")
        raw = data.get("voices") if isinstance(data, dict) else data
        if not isinstance(raw, list):
            raise ProtocolError("The voices answer has no voice list")
        voices: list[Voice] = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("voice_id"), str):
                continue
            name = item.get("name")
            category = item.get("category")
            preview = item.get("preview_url")
            voices.append(
                Voice(
                    voice_id=item["voice_id"],
                    name=name if isinstance(name, str) else item["voice_id"],
                    category=category if isinstance(category, str) else None,
                    preview_url=preview if isinstance(preview, str) else None,
                )
            )
        return voices

    async def synthesize(self, voice_id: str, text: str) -> SynthesizedSpeech:
        """Synthesize ``text`` with a voice; return the signed audio URL."""
        url = self._base / "v1/app/text-to-speech" / voice_id / "with-timestamps"
        _, body, _ = await self._request("POST", url, json_body={"text": text})
        data = self._parse_json(body, "text-to-speech")
        if not isinstance(data, dict) or not isinstance(data.get("audio_url"), str):
            raise ProtocolError("The text-to-speech answer has no audio URL")
        expires = data.get("expires_in")
        alignment = data.get("alignment")
        return SynthesizedSpeech(
            audio_url=str(self._base.join(URL(data["audio_url"]))),
            expires_in=float(expires) if isinstance(expires, int | float) else None,
            alignment=alignment if isinstance(alignment, dict) else None,
        )

    async def fetch_audio(self, url: str) -> bytes:
        """Download audio from a signed URL (the signature authenticates it)."""
        target = validate_base_url(url)
        try:
            async with self._session.get(target, timeout=self._timeout) as resp:
                if resp.status in (401, 403):
                    # The URL's signature expired or is wrong: our credentials are
                    # fine, so this must not look like an authentication failure.
                    message, _, code = _parse_error_body(await resp.text())
                    raise BadRequestError(
                        message or "The audio URL is no longer valid",
                        status=resp.status,
                        code=code,
                    )
                if resp.status != 200:
                    await self._raise_for_response(resp.status, await resp.text(), resp)
                return await resp.read()
        except ItanniXError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise self._connect_error(err) from None

    async def _request(
        self,
        method: str,
        url: URL,
        *,
        json_body: Any = None,
        data: str | None = None,
        content_type: str | None = None,
        expected: tuple[int, ...] = (200,),
    ) -> tuple[int, str, Mapping[str, str]]:
        headers = self._headers()
        if json_body is not None:
            data = json.dumps(json_body)
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                body = await resp.text(errors="replace")
                if resp.status not in expected:
                    await self._raise_for_response(resp.status, body, resp)
                return resp.status, body, resp.headers
        except ItanniXError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise self._connect_error(err) from None

    def _connect_error(self, err: BaseException) -> CannotConnectError:
        if isinstance(err, TimeoutError):
            return CannotConnectError("Timed out waiting for ItanniX")
        detail = self._redact(str(err)) or type(err).__name__
        return CannotConnectError(f"Cannot reach ItanniX: {detail}")

    @staticmethod
    def _parse_json(body: str, what: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise ProtocolError(f"The {what} answer is not valid JSON") from None

    def _redact(self, text: str) -> str:
        # The service never should echo them; make sure we never pass them on if it does.
        for secret in (
            self._credentials.client_secret,
            self._credentials.workspace_key,
        ):
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    async def _raise_for_response(
        self, status: int, body: str, resp: aiohttp.ClientResponse
    ) -> None:
        message, hint, code = _parse_error_body(body)
        message = self._redact(message or resp.reason or f"HTTP {status}")
        hint = self._redact(hint) if hint else None
        kwargs: dict[str, Any] = {"hint": hint, "status": status, "code": code}
        _LOGGER.debug("ItanniX answered %s: %s", status, message)
        if status in (401, 403):
            raise AuthenticationError(message, **kwargs)
        if status == 429:
            raise RateLimitedError(
                message,
                retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
                **kwargs,
            )
        if status in (400, 404, 409, 413, 415, 422):
            raise BadRequestError(message, **kwargs)
        raise ServerError(message, **kwargs)


def _parse_error_body(body: str) -> tuple[str | None, str | None, str | None]:
    """Return (message, hint, code) from the realtime, REST or OpenAI error shapes."""
    text = body.strip()
    if not text:
        return None, None, None
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_ERROR_TEXT], None, None
    if not isinstance(data, dict):
        return text[:_MAX_ERROR_TEXT], None, None
    message = data.get("message")
    hint = data.get("hint")
    code = data.get("code")
    detail = data.get("detail")
    if isinstance(detail, dict):
        message = detail.get("error", detail.get("message", message))
        code = detail.get("code", code)
        hint = detail.get("hint", hint)
    elif isinstance(detail, str):
        message = message or detail
    error = data.get("error")
    if isinstance(error, dict):
        message = message or error.get("message")
        code = code or error.get("code")
    elif isinstance(error, str):
        message = message or error

    def _str(value: Any) -> str | None:
        return str(value)[:_MAX_ERROR_TEXT] if value not in (None, "") else None

    return _str(message), _str(hint), _str(code)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    # The HTTP-date form.
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
