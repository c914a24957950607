"""What a user reads when ItanniX cannot be used: library errors to translation keys.

One place maps the realtime library's typed errors to the keys of ``strings.json``, so
the config flow, set-up and a failed turn say the same thing about the same failure.
Every text names what to check; none repeats the service's raw error where a
translated one says it, and none carries a credential (the library's errors never do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Literal

from homeassistant.exceptions import HomeAssistantError

from .const import CONF_BASE_URL, CONF_CLIENT_ID, CONF_WORKSPACE_KEY, DOMAIN
from .realtime import (
    AuthenticationError,
    CannotConnectError,
    ConnectFailure,
    InvalidUrlError,
    InvalidValueError,
    ItanniXError,
    RateLimitedError,
    RedirectError,
)
from .sessions import SessionLimitError

type FlowStep = Literal["user", "reauth", "reconfigure"]
type Credential = Literal["workspace_key", "secret", "client"]

_CONNECT_KEYS = {
    ConnectFailure.UNRESOLVED: "cannot_resolve",
    ConnectFailure.REFUSED: "connection_refused",
    ConnectFailure.TLS: "tls_failed",
    ConnectFailure.TIMEOUT: "connect_timeout",
    ConnectFailure.MEDIA: "media_blocked",
}
# The fields each step's form has (an error goes on its field where there is one).
_FIELDS: dict[FlowStep, frozenset[str]] = {
    "user": frozenset({CONF_WORKSPACE_KEY, CONF_CLIENT_ID, CONF_BASE_URL}),
    "reauth": frozenset({CONF_WORKSPACE_KEY}),
    "reconfigure": frozenset({CONF_WORKSPACE_KEY, CONF_BASE_URL}),
}


def connect_failure(err: CannotConnectError) -> tuple[str, dict[str, str]]:
    """The translation key and placeholders of a failure to reach the service."""
    if key := _CONNECT_KEYS.get(err.reason):
        return key, {"host": err.host or "-"}
    return "cannot_connect", {"error": err.message}


def turn_error(err: BaseException) -> HomeAssistantError:
    """The translated error a user sees for a failed turn."""
    placeholders: dict[str, str]
    if isinstance(err, AuthenticationError):
        key, placeholders = "auth_failed", {"hint": err.hint or err.message}
    elif isinstance(err, RateLimitedError):
        key, placeholders = "rate_limited", {"wait": retry_wait(err)}
    elif isinstance(err, SessionLimitError):
        key, placeholders = "too_many_conversations", {"count": str(err.count)}
    elif isinstance(err, CannotConnectError):
        key, placeholders = connect_failure(err)
    elif isinstance(err, TimeoutError):
        key, placeholders = "turn_timeout", {}
    elif isinstance(err, ItanniXError):
        key, placeholders = "turn_failed", {"error": err.message}
    else:
        key, placeholders = "turn_failed", {"error": type(err).__name__}
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )


def rejected_credential(err: AuthenticationError) -> Credential:
    """Which credential the service refused, from its code or, failing that, words."""
    text = f"{err.code or ''} {err.message} {err.hint or ''}".lower()
    if "workspace" in text:
        return "workspace_key"
    # A freshly generated secret is refused only when the Client ID is already
    # enrolled with another one.
    if "secret" in text:
        return "secret"
    return "client"


def retry_wait(err: RateLimitedError) -> str:
    """How long the service asked us to wait, for a sentence."""
    return f"{math.ceil(err.retry_after)} s" if err.retry_after else "a minute"


@dataclass(frozen=True, slots=True)
class FlowError:
    """An error of a config flow form: ``on`` a field or the whole form (``base``)."""

    on: str
    key: str
    placeholders: dict[str, str] = field(default_factory=dict)


def flow_error(err: ItanniXError, step: FlowStep) -> FlowError:
    """The form error for a failed enrollment or check in ``step``."""
    fields = _FIELDS[step]
    if isinstance(err, RedirectError):
        return FlowError("base", "redirected", {"location": err.location or "-"})
    if isinstance(err, InvalidUrlError):
        return FlowError(_on(CONF_BASE_URL, fields), "invalid_url")
    if isinstance(err, InvalidValueError) and err.field in fields:
        return FlowError(err.field, "invalid_characters")
    if isinstance(err, AuthenticationError):
        return _auth_error(err, step, fields)
    if isinstance(err, RateLimitedError):
        return FlowError("base", "rate_limited", {"wait": retry_wait(err)})
    if isinstance(err, CannotConnectError):
        key, placeholders = connect_failure(err)
        return FlowError("base", key, placeholders)
    return FlowError("base", "unknown", {"hint": err.hint or err.message})


def _on(name: str, fields: frozenset[str]) -> str:
    return name if name in fields else "base"


def _auth_error(
    err: AuthenticationError, step: FlowStep, fields: frozenset[str]
) -> FlowError:
    credential = rejected_credential(err)
    if credential == "workspace_key":
        return FlowError(_on(CONF_WORKSPACE_KEY, fields), "invalid_workspace_key")
    if credential == "secret":
        if step == "user":
            return FlowError(CONF_CLIENT_ID, "secret_mismatch")
        if step == "reauth":
            return FlowError("base", "secret_not_reset")
        return FlowError("base", "secret_rejected")
    return FlowError("base", "invalid_auth", {"hint": err.hint or err.message})
