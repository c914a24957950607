"""ItanniX realtime protocol library: REST client, WebRTC connection and sessions.

Pure asyncio on aiohttp and aiortc, without Home Assistant imports.
"""

from __future__ import annotations

from .audio import AudioSubscription, MicrophoneTrack, Resampler, SpeakerSink
from .client import (
    DEFAULT_APP_SOURCE,
    DEFAULT_BASE_URL,
    MAX_TTS_CHARS,
    Credentials,
    IceServer,
    ItanniXClient,
    SessionInfo,
    SynthesizedSpeech,
    Voice,
    validate_base_url,
)
from .config import AssistantConfig, Tool, function_tool
from .connection import (
    DEFAULT_CHANNEL_LABEL,
    DEFAULT_TRANSCRIPTION_MODEL,
    EventStream,
    RealtimeConnection,
)
from .errors import (
    AuthenticationError,
    BadRequestError,
    CannotConnectError,
    ConnectFailure,
    InvalidUrlError,
    ItanniXError,
    ProtocolError,
    RateLimitedError,
    RedirectError,
    ServerError,
)
from .events import (
    FunctionCall,
    FunctionCallTracker,
    InputTranscript,
    ResponseDone,
    ServerErrorEvent,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TextDone,
    TranscriptDelta,
    TranscriptDone,
    Usage,
    parse_event,
)
from .ice import build_rtc_configuration, sanitize_ice_servers
from .session import (
    AudioTurn,
    FunctionHandler,
    IncompleteReplyError,
    RealtimeSession,
    Reply,
    SessionExpiredError,
    Turn,
)
from .turns import TranscriptionError

__all__ = [
    "DEFAULT_APP_SOURCE",
    "DEFAULT_BASE_URL",
    "DEFAULT_CHANNEL_LABEL",
    "DEFAULT_TRANSCRIPTION_MODEL",
    "MAX_TTS_CHARS",
    "AssistantConfig",
    "AudioSubscription",
    "AudioTurn",
    "AuthenticationError",
    "BadRequestError",
    "CannotConnectError",
    "ConnectFailure",
    "Credentials",
    "EventStream",
    "FunctionCall",
    "FunctionCallTracker",
    "FunctionHandler",
    "IceServer",
    "IncompleteReplyError",
    "InputTranscript",
    "InvalidUrlError",
    "ItanniXClient",
    "ItanniXError",
    "MicrophoneTrack",
    "ProtocolError",
    "RateLimitedError",
    "RealtimeConnection",
    "RealtimeSession",
    "RedirectError",
    "Reply",
    "Resampler",
    "ResponseDone",
    "ServerError",
    "ServerErrorEvent",
    "SessionExpiredError",
    "SessionInfo",
    "SpeakerSink",
    "SpeechStarted",
    "SpeechStopped",
    "SynthesizedSpeech",
    "TextDelta",
    "TextDone",
    "Tool",
    "TranscriptDelta",
    "TranscriptDone",
    "TranscriptionError",
    "Turn",
    "Usage",
    "Voice",
    "build_rtc_configuration",
    "function_tool",
    "parse_event",
    "sanitize_ice_servers",
    "validate_base_url",
]
