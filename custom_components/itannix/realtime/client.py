"""HTTP client for the ItanniX realtime and REST endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
import ipaddress
import json
import logging
import math
import re
import time
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from yarl import URL

from .errors import (
    AuthenticationError,
    BadRequestError,
    CannotConnectError,
    ConnectFailure,
    InvalidUrlError,
    InvalidValueError,
    ItanniXError,
    ProtocolError,
    RateLimitedError,
    RedirectError,
    ServerError,
)
from .ice import IceServerHealth
from .logs import OnceLogger

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_LOGGER = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://api.itannix.com"
DEFAULT_APP_SOURCE: Final = "home-assistant"
MAX_TTS_CHARS: Final = 15_000
# Error bodies are shown to users: keep them readable, and never read a huge page whole.
_MAX_ERROR_TEXT: Final = 300
_REDACTED: Final = "**REDACTED**"
# What we read of an answer: SDP and JSON answers are a few kB; audio is bounded too.
_MAX_BODY: Final = 1 << 20
_MAX_AUDIO: Final = 64 << 20
_READ_CHUNK: Final = 64 << 10
# A signed audio URL may redirect to storage; a few hops, each checked, then no more.
_MAX_AUDIO_REDIRECTS: Final = 3
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_CONNECT_MESSAGES: Final = {
    ConnectFailure.UNRESOLVED: "The server name {host} could not be resolved",
    ConnectFailure.REFUSED: "{host} refused the connection",
    ConnectFailure.TLS: "The secure connection to {host} failed",
    ConnectFailure.TIMEOUT: "{host} did not answer in time",
}


def connect_failure(err: BaseException) -> ConnectFailure:
    """Classify an exception raised on the way to the server."""
    if isinstance(err, TimeoutError):
        return ConnectFailure.TIMEOUT
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return ConnectFailure.UNRESOLVED
    if isinstance(err, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)):
        return ConnectFailure.TLS
    if isinstance(err, aiohttp.ClientConnectorError) and isinstance(
        err.os_error, ConnectionRefusedError
    ):
        return ConnectFailure.REFUSED
    if isinstance(err, ConnectionRefusedError):
        return ConnectFailure.REFUSED
    return ConnectFailure.OTHER


# A Retry-After beyond this, or not a finite number, is not believed.
MAX_RETRY_AFTER: Final = 3600.0


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


# What a header we send may hold: visible ASCII, no space (IDs, keys and secrets are
# tokens). aiohttp raises a bare ValueError on a control character, and sends others
# (NUL, DEL on older versions; any non-ASCII) that a server may refuse or misread.
_HEADER_VALUE_RE: Final = re.compile(r"[\x21-\x7e]+")
_HEADER_FIELDS: Final = {
    "client_id": "The Client ID",
    "client_secret": "The client secret",
    "workspace_key": "The Workspace Key",
    "assistant_id": "The assistant ID",
}


def validate_header_value(field: str, value: str | None) -> None:
    """Raise InvalidValueError unless ``value`` (None: not sent) can go in a header.

    ``field`` is one of ``client_id``, ``client_secret``, ``workspace_key`` and
    ``assistant_id``; the value never appears in the error.
    """
    if value is None or _HEADER_VALUE_RE.fullmatch(value):
        return
    raise InvalidValueError(
        f"{_HEADER_FIELDS[field]} may only hold visible ASCII characters, no spaces",
        field=field,
    )


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
        """Initialize the client.

        Raise InvalidUrlError for an unacceptable URL, InvalidValueError for a
        credential or assistant ID no HTTP header can carry.
        """
        self._session = session
        self._base = validate_base_url(base_url.rstrip("/"))
        validate_header_value("client_id", credentials.client_id)
        validate_header_value("client_secret", credentials.client_secret)
        validate_header_value("workspace_key", credentials.workspace_key or None)
        # Typed into the options: surrounding blanks are never part of it.
        assistant_id = (assistant_id or "").strip() or None
        validate_header_value("assistant_id", assistant_id)
        self._credentials = credentials
        self._assistant_id = assistant_id
        self._app_source = app_source
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Problems the service repeats with every session (an unusable ICE server)
        # are logged once per client.
        self.log_once = OnceLogger(_LOGGER)
        # STUN/TURN servers that did not answer, left out of later set-ups a while.
        self.ice_health = IceServerHealth()
        # The shortest lifetime the service has ended a session at (seconds), if seen.
        self.session_cap: float | None = None

    def __repr__(self) -> str:
        """Return a representation without the secrets."""
        return f"ItanniXClient(base_url={str(self._base)!r}, client_id={self._credentials.client_id!r})"

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return str(self._base)

    @property
    def host(self) -> str:
        """The service's host name (what a user checks when it cannot be reached)."""
        return self._base.host or ""

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
        try:
            audio_url = str(self._base.join(URL(data["audio_url"])))
        except (TypeError, ValueError):
            raise ProtocolError(
                "The text-to-speech answer's audio URL is not valid"
            ) from None
        return SynthesizedSpeech(
            audio_url=audio_url,
            expires_in=float(expires) if isinstance(expires, int | float) else None,
            alignment=alignment if isinstance(alignment, dict) else None,
        )

    async def fetch_audio(self, url: str) -> bytes:
        """Download audio from a signed URL (the signature authenticates it).

        No credentials go with it. The URL is checked like the base URL, and from an
        https service never plain http (not even to this machine: the service must not
        make Home Assistant fetch what listens on its own loopback). Redirects are
        followed a few hops, each one checked the same way.
        """
        try:
            target = validate_base_url(url)
        except InvalidUrlError:
            raise ProtocolError("The audio URL is not an address allowed") from None
        if self._base.scheme == "https" and target.scheme != "https":
            raise ProtocolError("The audio URL of an https service is plain http")
        for _ in range(_MAX_AUDIO_REDIRECTS + 1):
            try:
                async with self._session.get(
                    target, timeout=self._timeout, allow_redirects=False
                ) as resp:
                    if resp.status in _REDIRECTS:
                        target = _audio_redirect(target, resp.headers.get("Location"))
                        continue
                    if resp.status != 200:
                        body = await _read_text(resp, _MAX_BODY)
                        # A 401/403 means the URL's signature expired or is wrong:
                        # our credentials are fine, so it must not look like an
                        # authentication failure.
                        raise self._response_error(
                            resp, body, signed_url=resp.status in (401, 403)
                        )
                    return await _read_body(resp, _MAX_AUDIO)
            except ItanniXError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                raise self._connect_error(err, target.host) from None
        raise ProtocolError("The audio URL redirects too often")

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
            # Never follow a redirect: our credentials would go wherever it says,
            # over plain http if it says so.
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                if 300 <= resp.status < 400:
                    raise self._redirect_error(url, resp)
                body = await _read_text(resp, _MAX_BODY)
                if resp.status not in expected:
                    raise self._response_error(resp, body)
                return resp.status, body, resp.headers
        except ItanniXError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise self._connect_error(err) from None

    def _connect_error(
        self, err: BaseException, host: str | None = None
    ) -> CannotConnectError:
        """What failed on the way to ``host`` (the service's, unless told another)."""
        host = host or self.host
        reason = connect_failure(err)
        if reason is ConnectFailure.OTHER:
            detail = self.redact(str(err)) or type(err).__name__
            return CannotConnectError(
                f"Cannot reach {host}: {detail}", reason=reason, host=host
            )
        return CannotConnectError(
            _CONNECT_MESSAGES[reason].format(host=host), reason=reason, host=host
        )

    @staticmethod
    def _parse_json(body: str, what: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise ProtocolError(f"The {what} answer is not valid JSON") from None

    def note_session_expired(self, age: float) -> None:
        """The service ended a session at its maximum duration, ``age`` seconds in."""
        if age > 0 and (self.session_cap is None or age < self.session_cap):
            self.session_cap = age

    def redact(self, text: str) -> str:
        """Return ``text`` without this client's secret or workspace key.

        The service never should echo them; make sure we never pass them on if it does.
        """
        for secret in (
            self._credentials.client_secret,
            self._credentials.workspace_key,
        ):
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    def _redirect_error(self, url: URL, resp: aiohttp.ClientResponse) -> RedirectError:
        origin = _redirect_origin(url, resp.headers.get("Location"))
        origin = self.redact(origin) if origin else None
        _LOGGER.debug("ItanniX answered %s with a redirect to %s", resp.status, origin)
        where = f" to {origin}" if origin else ""
        return RedirectError(
            f"The server answered with a redirect{where}",
            status=resp.status,
            location=origin,
        )

    def _response_error(
        self, resp: aiohttp.ClientResponse, body: str, *, signed_url: bool = False
    ) -> ItanniXError:
        """The typed error for an unexpected answer, scrubbed of our credentials."""
        status = resp.status
        message, hint, code = _parse_error_body(body)
        if signed_url:
            message = message or "The audio URL is no longer valid"
        message = self.redact(message or resp.reason or f"HTTP {status}")
        kwargs: dict[str, Any] = {
            "hint": self.redact(hint) if hint else None,
            "status": status,
            "code": self.redact(code) if code else None,
        }
        _LOGGER.debug("ItanniX answered %s: %s", status, message)
        if signed_url:
            return BadRequestError(message, **kwargs)
        if status in (401, 403):
            return AuthenticationError(message, **kwargs)
        if status == 429:
            return RateLimitedError(
                message,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                **kwargs,
            )
        if status in (400, 404, 409, 413, 415, 422):
            return BadRequestError(message, **kwargs)
        return ServerError(message, **kwargs)


async def _read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read the body, refusing one larger than ``limit`` bytes."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        body += chunk
        if len(body) > limit:
            raise ProtocolError("The service's answer is too large")
    return bytes(body)


async def _read_text(resp: aiohttp.ClientResponse, limit: int) -> str:
    """The body as text: SDP and JSON are UTF-8, whatever the headers claim."""
    return (await _read_body(resp, limit)).decode("utf-8", errors="replace")


def _redirect_origin(base: URL, location: str | None) -> str | None:
    """The origin a ``Location`` header names (relative to ``base``), if readable."""
    if not location:
        return None
    try:
        target = base.join(URL(location))
        if target.scheme not in ("http", "https") or not target.host:
            return None
        return str(target.origin())[:_MAX_ERROR_TEXT]
    except (TypeError, ValueError):
        return None


def _audio_redirect(current: URL, location: str | None) -> URL:
    """Where a signed audio URL's redirect leads, if it is acceptable."""
    try:
        target = current.join(URL(location or ""))
    except (TypeError, ValueError):
        raise ProtocolError("The audio URL redirected to an invalid address") from None
    if not location or target == current:
        raise ProtocolError("The audio URL redirected nowhere")
    if current.scheme == "https" and target.scheme != "https":
        raise ProtocolError("The audio URL redirected from https to plain http")
    try:
        return validate_base_url(str(target))
    except InvalidUrlError:
        raise ProtocolError(
            "The audio URL redirected to an address not allowed"
        ) from None


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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when not believable.

    Either form (seconds or an HTTP date); anything not finite, or over an hour, is
    treated as if there were no header.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds) or seconds > MAX_RETRY_AFTER:
        return None
    return max(0.0, seconds)
