"""The emulator's HTTP side: routes, CORS, authentication, faults, and its lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import ipaddress
import logging
import random
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.network import NetworkProfile, http_network

from .auth import EnrollmentStore, Verdict
from .behaviour import Behaviour
from .brain import ScriptedBrain
from .faults import Faults
from .loopback import restrict_ice_to_loopback
from .peer import DEFAULT_MODALITIES, EmulatedSession, offer_has_audio
from .rest import DEFAULT_URL_TTL, RestApi, rest_error
from .voice import Synthesizer

if TYPE_CHECKING:
    from pathlib import Path

_LOGGER = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
ADMIN_PREFIX = "/_admin/"
DEFAULT_ASSISTANT = "default"

# Headers a session records; the secret ones are stored as "***".
_RECORDED_HEADERS = (
    "Content-Type",
    "User-Agent",
    "X-Workspace-Key",
    "X-Client-Id",
    "X-Client-Secret",
    "X-Assistant-Id",
    "X-App-Source",
)
_REDACTED_HEADERS = frozenset({"X-Workspace-Key", "X-Client-Secret"})

_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Content-Type, X-Workspace-Key, X-Client-Id, X-Client-Secret, "
        "X-Assistant-Id, X-App-Source"
    ),
    "Access-Control-Max-Age": "600",
}

type _Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _realtime_error(status: int, message: str, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if hint is not None:
        body["hint"] = hint
    return web.json_response(body, status=status)


class Emulator:
    """An ItanniX-compatible service on loopback, for tests and local development."""

    def __init__(
        self,
        workspace_key: str | None = None,
        state_file: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ga_names: bool = False,
        tts_url_ttl: float = DEFAULT_URL_TTL,
        use_espeak: bool | None = None,
        behaviour: Behaviour | None = None,
    ) -> None:
        """Configure the emulator; ``workspace_key=None`` is the older docs' mode.

        ``behaviour`` sets how the emulated service behaves where the protocol
        allows several behaviours (``Behaviour()``, the pessimistic one, when None);
        sessions read ``self.behaviour`` whenever they need it.
        """
        self.workspace_key = workspace_key
        self.host = host
        self.port = port
        self.ga_names = ga_names
        self.faults = Faults()
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        # The network between the client and the service (None: straight loopback):
        # each new session's media path goes through a relay that applies it, and
        # every HTTP answer pays one round trip of it (read per request).
        self.network: NetworkProfile | None = None
        self._network_rng = random.Random()
        self.sessions: list[EmulatedSession] = []
        self.requests: list[tuple[str, str, int]] = []
        self._store = EnrollmentStore(state_file)
        self._brains: dict[str, ScriptedBrain] = {}
        self._synth = Synthesizer(use_espeak)
        self._rest = RestApi(self._synth, tts_url_ttl)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._stopping = asyncio.Event()
        self._stopped = False

    # -- Public API --------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (after ``start()``)."""
        if self._url is None:
            raise RuntimeError("The emulator is not started")
        return self._url

    @property
    def synthesized(self) -> list[str]:
        """The text of every text-to-speech request synthesized, in order."""
        return self._rest.synthesized

    @property
    def speaks_with_espeak(self) -> bool:
        """Return True when replies are espeak-ng speech (a tone otherwise)."""
        return self._synth.use_espeak

    def assistant(self, assistant_id: str = DEFAULT_ASSISTANT) -> ScriptedBrain:
        """Return the scripted brain of ``assistant_id`` (created on first use)."""
        brain = self._brains.get(assistant_id)
        if brain is None:
            brain = self._brains[assistant_id] = ScriptedBrain(assistant_id)
        return brain

    def reset_enrollment(self, client_id: str) -> None:
        """Forget the client's enrolled secret, as the dashboard's reset does."""
        self._store.reset(client_id)

    def is_enrolled(self, client_id: str) -> bool:
        """Return True when the client has an enrolled secret."""
        return self._store.is_enrolled(client_id)

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0 picks a free one)."""
        if self._runner is not None:
            return
        restrict_ice_to_loopback()
        network = http_network(
            lambda: self.network,
            exempt=lambda request: request.path.startswith(ADMIN_PREFIX),
            rng=self._network_rng,
        )
        app = web.Application(middlewares=[network, self._middleware])
        app.router.add_post("/v1/realtime/sessions", self._create_session)
        app.router.add_post("/v1/realtime", self._exchange_sdp)
        app.router.add_get("/v1/app/voices", self._voices)
        app.router.add_post(
            "/v1/app/text-to-speech/{voice_id}/with-timestamps", self._text_to_speech
        )
        app.router.add_get("/v1/app/audio/{token}", self._rest.audio)
        app.router.add_post(
            ADMIN_PREFIX + "enrollments/{client_id}/reset", self._admin_reset_enrollment
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Close every peer and task, then the HTTP server (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        await asyncio.gather(*(s.close() for s in self.sessions))
        if self._runner is not None:
            await self._runner.cleanup()
        # Sessions created by requests that were in flight during cleanup.
        await asyncio.gather(*(s.close() for s in self.sessions))

    async def __aenter__(self) -> Emulator:
        """Start on entering ``async with``."""
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Stop on leaving ``async with``."""
        await self.stop()

    # -- HTTP plumbing -----------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: _Handler
    ) -> web.StreamResponse:
        admin = request.path.startswith(ADMIN_PREFIX)
        if request.method == "OPTIONS" and not admin:
            response: web.StreamResponse = web.Response(status=204)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as err:
                response = web.Response(
                    status=err.status, reason=err.reason, text=err.text
                )
                response.headers.update(
                    {k: v for k, v in err.headers.items() if k != "Content-Length"}
                )
        if not admin:  # no browser page may use the admin API
            response.headers.update(
                {"Access-Control-Allow-Origin": "*"}
                if request.method != "OPTIONS"
                else _CORS_HEADERS
            )
        self.requests.append((request.method, request.path, response.status))
        return response

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False when the emulator stops first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    async def _guard(self, request: web.Request, endpoint: str) -> web.Response | None:
        """Apply the endpoint's delay and fault, then authenticate the client."""
        rest = endpoint in {"voices", "tts"}
        delay = self.faults.delay.get(endpoint, 0.0)
        if delay > 0 and not await self._wait(delay):
            return _realtime_error(503, "The service is shutting down")
        if (redirect := self.faults.redirect.get(endpoint)) is not None:
            status, location = redirect
            return web.Response(status=status, headers={"Location": location})
        if (status := self.faults.status.get(endpoint)) is not None:
            body = self.faults.body.get(endpoint)
            if body is None:
                body = (
                    {"detail": {"error": "Emulated fault", "code": "EMULATED_FAULT"}}
                    if rest
                    else {"message": f"Emulated fault ({status})", "hint": "Try later"}
                )
            response = web.json_response(body, status=status)
            if status == 429 and self.faults.retry_after is not None:
                response.headers["Retry-After"] = str(self.faults.retry_after)
            return response
        return self._authenticate(request, rest)

    def _authenticate(self, request: web.Request, rest: bool) -> web.Response | None:
        def fail(status: int, message: str, code: str, hint: str) -> web.Response:
            if rest:
                return rest_error(status, message, code)
            return _realtime_error(status, message, hint)

        headers = request.headers
        if self.workspace_key is not None and not secrets.compare_digest(
            headers.get("X-Workspace-Key", "").encode(), self.workspace_key.encode()
        ):
            return fail(
                401,
                "Invalid workspace key",
                "INVALID_WORKSPACE_KEY",
                "Create a workspace key in the ItanniX dashboard (Settings → Workspace)",
            )
        client_id = headers.get("X-Client-Id", "")
        if not client_id:
            return fail(
                400,
                "Missing X-Client-Id header",
                "MISSING_CLIENT_ID",
                "Send the client's ID in X-Client-Id",
            )
        secret = headers.get("X-Client-Secret", "")
        if len(secret) < MIN_SECRET_LENGTH:
            return fail(
                400,
                f"X-Client-Secret must be at least {MIN_SECRET_LENGTH} characters",
                "INVALID_CLIENT_SECRET",
                "Generate a random secret of 32 or more characters on the device",
            )
        if self._store.check(client_id, secret) is Verdict.MISMATCH:
            return fail(
                401,
                "Client secret does not match the enrolled secret",
                "CLIENT_SECRET_MISMATCH",
                "Reset the client's secret in the ItanniX dashboard",
            )
        return None

    @staticmethod
    def _recorded_headers(request: web.Request) -> dict[str, str]:
        return {
            name: "***" if name in _REDACTED_HEADERS else request.headers[name]
            for name in _RECORDED_HEADERS
            if name in request.headers
        }

    # -- Realtime endpoints ------------------------------------------------------

    def _new_session(
        self, request: web.Request, modalities: list[str]
    ) -> EmulatedSession:
        assistant_id = request.headers.get("X-Assistant-Id")
        session = EmulatedSession(
            client_id=request.headers["X-Client-Id"],
            headers=self._recorded_headers(request),
            app_source=request.headers.get("X-App-Source"),
            assistant_id=assistant_id,
            modalities=modalities,
            brain=self.assistant(assistant_id or DEFAULT_ASSISTANT),
            synthesizer=self._synth,
            faults=self.faults,
            ga_names=self.ga_names,
            network=self.network,
            behaviour=lambda: self.behaviour,
        )
        self.sessions.append(session)
        return session

    async def _create_session(self, request: web.Request) -> web.Response:
        if (error := await self._guard(request, "sessions")) is not None:
            return error
        modalities = list(DEFAULT_MODALITIES)
        if await request.read():
            try:
                body = await request.json()
            except ValueError:
                return _realtime_error(400, "The body is not valid JSON")
            requested = body.get("modalities") if isinstance(body, dict) else None
            if requested is not None:
                if not isinstance(requested, list) or not all(
                    m in {"text", "audio"} for m in requested
                ):
                    return _realtime_error(
                        400, "modalities must be a list of 'text' and 'audio'"
                    )
                modalities = list(requested)
        session = self._new_session(request, modalities)
        return web.json_response(
            {
                "id": session.id,
                "object": "realtime.session",
                "modalities": session.modalities,
                "iceServers": [],
            }
        )

    async def _exchange_sdp(self, request: web.Request) -> web.Response:
        if (error := await self._guard(request, "sdp")) is not None:
            return error
        offer = await request.text()
        if self.faults.no_answer:
            await self._stopping.wait()
            return _realtime_error(503, "The service is shutting down")
        if not offer_has_audio(offer):
            return _realtime_error(
                400,
                "The realtime API requires audio input: the offer has no audio track",
                "Add an audio track to the peer connection (silence is fine)",
            )
        if self.faults.malformed_sdp:
            return web.Response(
                status=201, text="this is not an SDP answer", content_type="text/plain"
            )
        client_id = request.headers["X-Client-Id"]
        session = next(
            (s for s in reversed(self.sessions) if s.client_id == client_id), None
        )
        if session is None or session.has_peer or session.closed:
            # No fresh session to pair with: the service starts one with defaults.
            modalities = session.modalities if session else list(DEFAULT_MODALITIES)
            session = self._new_session(request, modalities)
        if self._stopped:
            return _realtime_error(503, "The service is shutting down")
        try:
            answer = await session.answer(offer)
        except ValueError:
            return _realtime_error(
                400, "The SDP offer could not be parsed", "Send the offer's SDP as is"
            )
        return web.Response(status=201, text=answer, content_type="application/sdp")

    # -- Admin (loopback only) ---------------------------------------------------

    @staticmethod
    def _from_loopback(request: web.Request) -> bool:
        """Return True when the TCP peer itself is on loopback (headers don't count)."""
        peer = (
            request.transport.get_extra_info("peername")
            if request.transport is not None
            else None
        )
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return address.is_loopback

    async def _admin_reset_enrollment(self, request: web.Request) -> web.Response:
        """The dashboard's "reset secret": the client's next secret enrolls anew.

        Loopback peers only, and no browser page (a request with an Origin header):
        403 otherwise.
        """
        if not self._from_loopback(request) or "Origin" in request.headers:
            return web.json_response(
                {"message": "The admin API answers loopback clients only"}, status=403
            )
        self.reset_enrollment(request.match_info["client_id"])
        return web.Response(status=204)

    # -- REST endpoints ----------------------------------------------------------

    async def _voices(self, request: web.Request) -> web.Response:
        if (error := await self._guard(request, "voices")) is not None:
            return error
        return await self._rest.voices(request)

    async def _text_to_speech(self, request: web.Request) -> web.Response:
        if (error := await self._guard(request, "tts")) is not None:
            return error
        return await self._rest.text_to_speech(request, self.url)
