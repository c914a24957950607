"""The REST API: voices, text-to-speech, and the signed, expiring audio URLs."""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import hmac
import math
import secrets
import time
from typing import Any

from aiohttp import web

from .voice import SAMPLE_RATE, Synthesizer, pcm_to_wav

MAX_TTS_CHARS = 15000
DEFAULT_URL_TTL = 300.0

VOICES: list[dict[str, Any]] = [
    {"voice_id": "v_alloy", "name": "Alloy", "category": "workspace"},
    {"voice_id": "v_echo", "name": "Echo", "category": "workspace"},
    {"voice_id": "v_my_voice", "name": "My Voice", "category": "cloned"},
]


def rest_error(status: int, error: str, code: str) -> web.Response:
    """Return an error in the REST API's shape."""
    return web.json_response({"detail": {"error": error, "code": code}}, status=status)


@dataclass
class _Audio:
    expires_at: float
    wav: bytes | None  # dropped once expired


class RestApi:
    """Handlers for /v1/app/*; authentication happens before they run."""

    def __init__(
        self, synthesizer: Synthesizer, url_ttl: float = DEFAULT_URL_TTL
    ) -> None:
        """Sign audio URLs with a per-process key; they live ``url_ttl`` seconds."""
        self._synth = synthesizer
        self._ttl = url_ttl
        self._key = secrets.token_bytes(32)
        self._audio: dict[str, _Audio] = {}
        # The text of every text-to-speech request synthesized, in order.
        self.synthesized: list[str] = []

    def _sign(self, token: str, exp: int) -> str:
        return hmac.new(
            self._key, f"{token}:{exp}".encode(), hashlib.sha256
        ).hexdigest()

    async def voices(self, _request: web.Request) -> web.Response:
        """GET /v1/app/voices."""
        return web.json_response({"voices": VOICES})

    async def text_to_speech(self, request: web.Request, base_url: str) -> web.Response:
        """POST /v1/app/text-to-speech/{voice_id}/with-timestamps."""
        voice_id = request.match_info["voice_id"]
        if not any(v["voice_id"] == voice_id for v in VOICES):
            return rest_error(404, "Voice not found", "VOICE_NOT_FOUND")
        try:
            body = await request.json()
        except ValueError:
            return rest_error(400, "Body must be JSON", "INVALID_JSON")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return rest_error(400, "text is required", "INVALID_TEXT")
        if len(text) > MAX_TTS_CHARS:
            return rest_error(
                400, f"text is limited to {MAX_TTS_CHARS} characters", "TEXT_TOO_LONG"
            )
        self.synthesized.append(text)
        pcm = await self._synth.synthesize(text)
        self._forget_expired()
        token = secrets.token_urlsafe(16)
        expires_at = time.time() + self._ttl
        exp = math.ceil(expires_at)
        self._audio[token] = _Audio(expires_at, pcm_to_wav(pcm))
        duration = len(pcm) / 2 / SAMPLE_RATE
        step = duration / len(text)
        return web.json_response(
            {
                "audio_url": f"{base_url}/v1/app/audio/{token}"
                f"?exp={exp}&sig={self._sign(token, exp)}",
                "expires_in": math.ceil(self._ttl),
                "alignment": {
                    "characters": list(text),
                    "character_start_times_seconds": [
                        round(i * step, 3) for i in range(len(text))
                    ],
                    "character_end_times_seconds": [
                        round((i + 1) * step, 3) for i in range(len(text))
                    ],
                },
            }
        )

    async def audio(self, request: web.Request) -> web.Response:
        """GET /v1/app/audio/{token}: the signed URL; no auth headers needed."""
        token = request.match_info["token"]
        exp = request.query.get("exp", "")
        sig = request.query.get("sig", "")
        if not exp.isdigit() or not hmac.compare_digest(
            sig.encode(), self._sign(token, int(exp)).encode()
        ):
            return rest_error(403, "Invalid signature", "INVALID_SIGNATURE")
        self._forget_expired()
        audio = self._audio.get(token)
        if audio is None:
            return rest_error(404, "Audio not found", "NOT_FOUND")
        if audio.wav is None:
            return rest_error(403, "The audio URL has expired", "URL_EXPIRED")
        return web.Response(body=audio.wav, content_type="audio/wav")

    def _forget_expired(self) -> None:
        now = time.time()
        for audio in self._audio.values():
            if audio.expires_at <= now:
                audio.wav = None
