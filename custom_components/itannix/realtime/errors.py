"""Typed errors raised by the ItanniX realtime library.

Every error carries what the service said (``message``, ``hint``, ``code``) and the HTTP
``status`` when there was one. None of them ever contains the client secret or the
workspace key: messages are built from the service's reply, never from our request.
"""

from __future__ import annotations

from enum import StrEnum


class ItanniXError(Exception):
    """Base class of every error the library raises."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        """Initialize the error with the service's message and optional details."""
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status
        self.code = code

    def __str__(self) -> str:
        """Return the message, followed by the hint when the service gave one."""
        text = self.message
        if self.status is not None:
            text = f"{text} (HTTP {self.status})"
        if self.hint:
            text = f"{text}. {self.hint}"
        return text


class AuthenticationError(ItanniXError):
    """The service refused the credentials (HTTP 401/403): key or secret mismatch."""


class RateLimitedError(ItanniXError):
    """The service asked us to slow down (HTTP 429)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = 429,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Initialize with the number of seconds from ``Retry-After``, when given."""
        super().__init__(message, hint=hint, status=status, code=code)
        self.retry_after = retry_after


class ServerError(ItanniXError):
    """The service failed (5xx) or answered with a status we did not expect."""


class ConnectFailure(StrEnum):
    """What stood between us and the service, as far as the client can tell."""

    UNRESOLVED = "unresolved"
    """The server's name could not be resolved (DNS)."""
    REFUSED = "refused"
    """The server's host answered, but nothing listens on its port."""
    TLS = "tls"
    """The TLS handshake failed (certificate, or not TLS at all)."""
    TIMEOUT = "timeout"
    """No HTTP answer in time."""
    MEDIA = "media"
    """The server answered over HTTPS, but the WebRTC path (UDP, TURN) never opened."""
    DROPPED = "dropped"
    """An open session lost its connection."""
    OTHER = "other"
    """Anything else on the way to the server."""


class CannotConnectError(ItanniXError):
    """The service could not be reached, timed out, or the session dropped.

    ``reason`` says which of these it was; ``host`` is the server's host name when the
    failure concerns reaching it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: ConnectFailure = ConnectFailure.OTHER,
        host: str | None = None,
        hint: str | None = None,
    ) -> None:
        """Initialize with what failed and, when known, the host it concerned."""
        super().__init__(message, hint=hint)
        self.reason = reason
        self.host = host


class ProtocolError(ItanniXError):
    """The service answered with something we could not understand."""


class InvalidUrlError(ItanniXError):
    """The base URL is not acceptable (bad scheme, or plain HTTP to a remote host)."""


class RedirectError(InvalidUrlError):
    """The service answered with a redirect, which a request with credentials refuses.

    ``location`` is the origin (scheme, host and port) the redirect named, or None when
    it named none that could be read: enough to check the configured URL, nothing of
    the path or query, which may carry tokens.
    """

    def __init__(
        self, message: str, *, status: int | None = None, location: str | None = None
    ) -> None:
        """Initialize with the redirect's status and the origin it pointed to."""
        super().__init__(
            message,
            hint="Check the server URL: it must name the ItanniX API itself",
            status=status,
        )
        self.location = location


class InvalidValueError(ItanniXError):
    """A credential or the assistant ID holds characters no HTTP header may carry.

    ``field`` names which one: ``client_id``, ``client_secret``, ``workspace_key`` or
    ``assistant_id``. The value itself is never part of the error.
    """

    def __init__(self, message: str, *, field: str) -> None:
        """Initialize with the field whose value cannot be sent."""
        super().__init__(message)
        self.field = field


class BadRequestError(ItanniXError):
    """The service rejected the request itself (HTTP 400/404/422)."""
