"""Wait until scripts/develop's own servers answer (run inside the latest lane).

    python scripts/_develop_ready.py CONFIG_DIR --port PORT --emulator-port PORT \
        --instance TOKEN --workspace-key KEY [--user dev --password dev] \
        [--ha-pid PID] [--emulator-pid PID] [--timeout SECONDS]

Whatever answers on a port is not taken on trust. Home Assistant is ready when, on
127.0.0.1:PORT, its frontend answers, the development login works, /api/config names
CONFIG_DIR (not in recovery mode), and sensor.itannix_develop_instance holds TOKEN:
scripts/_develop_config.py writes a new one into the configuration before each start,
so a Home Assistant that was already running (another configuration, or this one from
an earlier start) cannot show it. The emulator is ready when 127.0.0.1:PORT answers as
an ItanniX emulator that takes KEY.

Anything else answering on either port fails at once, as does a watched process
exiting or the timeout: one line on stderr (`error: ...`), exit status 1. Prints
nothing when ready. The login's refresh token is revoked before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass
import os
from pathlib import Path
import sys
import time

import aiohttp

INSTANCE_SENSOR = "sensor.itannix_develop_instance"
REQUEST_TIMEOUT = 5.0
# Home Assistant running without the instance sensor: allowed this long for it to show.
SENSOR_GRACE = 20.0


class NotReadyError(Exception):
    """The check cannot pass: the message says why, in one line."""


@dataclass(slots=True)
class Settings:
    """What the check compares against."""

    config_dir: Path
    port: int
    emulator_port: int
    instance: str
    workspace_key: str
    user: str
    password: str


class HomeAssistantProbe:
    """Step by step: is the Home Assistant on the port the one scripts/develop started."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings) -> None:
        """Probe ``settings.port`` with ``http``."""
        self.http = http
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self._sensor_missing_since: float | None = None

    def _not_ours(self, why: str) -> NotReadyError:
        return NotReadyError(
            f"the Home Assistant on port {self.settings.port} is not the one "
            f"scripts/develop started: {why}"
        )

    async def ready(self) -> bool:
        """True once proven; False to look again later; NotReadyError when it cannot be."""
        try:
            async with self.http.get(f"{self.url}/manifest.json") as resp:
                status = resp.status
                server = resp.headers.get("Server", "unknown")
                await resp.read()
        except (aiohttp.ClientConnectionError, TimeoutError):
            return False  # not listening (or not serving) yet
        # Home Assistant serves nothing before its frontend is set up.
        if status != 200:
            raise NotReadyError(
                f"port {self.settings.port} answers, but not as Home Assistant "
                f"(GET /manifest.json: HTTP {status}, server {server})"
            )
        if self.access_token is None:
            await self._login()
        config = await self._get("/api/config")
        if config is None:
            raise self._not_ours("/api/config is not there")
        served = Path(str(config.get("config_dir", "")))
        if served != self.settings.config_dir:
            raise self._not_ours(f"it runs the configuration in {served}")
        if config.get("recovery_mode"):
            raise NotReadyError(
                "Home Assistant started in recovery mode; see "
                f"{self.settings.config_dir}/home-assistant.log"
            )
        running = config.get("state") == "RUNNING"
        sensor = await self._get(f"/api/states/{INSTANCE_SENSOR}")
        if sensor is None:
            return self._sensor_missing(running=running)
        if sensor.get("state") == self.settings.instance:
            return True
        # Until Home Assistant runs, the sensor may still show the state restored from
        # the last run: its template is rendered as Home Assistant starts.
        if not running:
            return False
        raise self._not_ours(
            "its instance token is from an earlier start (stop that Home Assistant)"
        )

    def _sensor_missing(self, *, running: bool) -> bool:
        """Wait for the sensor while starting; a running one without it is stale."""
        if not running:
            return False
        now = time.monotonic()
        if self._sensor_missing_since is None:
            self._sensor_missing_since = now
        if now - self._sensor_missing_since > SENSOR_GRACE:
            raise self._not_ours(f"it is running without {INSTANCE_SENSOR}")
        return False

    async def _get(self, path: str) -> dict[str, object] | None:
        """GET an API path as the logged-in user; None for 404."""
        headers = {"Authorization": f"Bearer {self.access_token}"}
        async with self.http.get(f"{self.url}{path}", headers=headers) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise self._not_ours(f"GET {path}: HTTP {resp.status}")
            try:
                body = await resp.json()
            except (aiohttp.ContentTypeError, ValueError):
                body = None
        if not isinstance(body, dict):
            raise self._not_ours(f"GET {path}: not a JSON object")
        return body

    async def _login(self) -> None:
        """Log in with the development login, as the frontend does."""
        client_id = f"{self.url}/"
        user = self.settings.user
        try:
            async with self.http.post(
                f"{self.url}/auth/login_flow",
                json={
                    "client_id": client_id,
                    "handler": ["homeassistant", None],
                    "redirect_uri": f"{client_id}?auth_callback=1",
                },
            ) as resp:
                flow = await resp.json()
            async with self.http.post(
                f"{self.url}/auth/login_flow/{flow['flow_id']}",
                json={
                    "client_id": client_id,
                    "username": user,
                    "password": self.settings.password,
                },
            ) as resp:
                result = await resp.json()
            if result.get("type") != "create_entry":
                raise self._not_ours(
                    f"it refuses the login {user} / {self.settings.password}"
                )
            async with self.http.post(
                f"{self.url}/auth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": result["result"],
                    "client_id": client_id,
                },
            ) as resp:
                tokens = await resp.json()
            self.access_token = tokens["access_token"]
            self.refresh_token = tokens.get("refresh_token")
        except (aiohttp.ContentTypeError, KeyError, TypeError, ValueError) as err:
            raise self._not_ours(f"its login does not work ({err!r})") from None

    async def revoke(self) -> None:
        """Leave no session behind: this login was only for the check."""
        if self.refresh_token is None:
            return
        try:
            async with self.http.post(
                f"{self.url}/auth/revoke", data={"token": self.refresh_token}
            ) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            pass


async def emulator_ready(http: aiohttp.ClientSession, settings: Settings) -> bool:
    """True once the emulator answers and takes the workspace key.

    Without a Client ID, the emulator's answer tells the key apart (a wrong one is
    401) without enrolling anything: 400 MISSING_CLIENT_ID.
    """
    url = f"http://127.0.0.1:{settings.emulator_port}/v1/app/voices"
    try:
        async with http.get(
            url, headers={"X-Workspace-Key": settings.workspace_key}
        ) as resp:
            status = resp.status
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
    except (aiohttp.ClientConnectionError, TimeoutError):
        return False
    detail = body.get("detail") if isinstance(body, dict) else None
    code = detail.get("code") if isinstance(detail, dict) else None
    if status == 400 and code == "MISSING_CLIENT_ID":
        return True
    if status == 401 and code == "INVALID_WORKSPACE_KEY":
        raise NotReadyError(
            f"the emulator on port {settings.emulator_port} is not the one "
            "scripts/develop started: it refuses this config's workspace key"
        )
    raise NotReadyError(
        f"port {settings.emulator_port} answers, but not as the ItanniX emulator "
        f"(GET /v1/app/voices: HTTP {status})"
    )


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_ready(
    settings: Settings, ha_pid: int | None, emulator_pid: int | None, seconds: float
) -> None:
    """Poll both servers until both are proven; NotReadyError otherwise."""
    deadline = time.monotonic() + seconds
    client_timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(timeout=client_timeout) as http:
        probe = HomeAssistantProbe(http, settings)
        try:
            ha_done = emulator_done = False
            while True:
                emulator_done = emulator_done or await emulator_ready(http, settings)
                if not ha_done:
                    # Gone mid-check (a restart, say): look again.
                    with contextlib.suppress(
                        aiohttp.ClientConnectionError, TimeoutError
                    ):
                        ha_done = await probe.ready()
                if ha_done and emulator_done:
                    return
                if not _alive(ha_pid):
                    raise NotReadyError(
                        "Home Assistant exited; see "
                        f"{settings.config_dir}/home-assistant.log"
                    )
                if not _alive(emulator_pid):
                    raise NotReadyError("the emulator exited")
                if time.monotonic() > deadline:
                    waiting = "Home Assistant" if not ha_done else "the emulator"
                    raise NotReadyError(f"{waiting} did not answer in {seconds:.0f}s")
                await asyncio.sleep(1)
        finally:
            await probe.revoke()


def main() -> None:
    """Wait, and exit with the verdict."""
    parser = argparse.ArgumentParser(prog="scripts/_develop_ready.py")
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--emulator-port", type=int, required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--workspace-key", required=True)
    parser.add_argument("--user", default="dev")
    parser.add_argument("--password", default="dev")
    parser.add_argument("--ha-pid", type=int)
    parser.add_argument("--emulator-pid", type=int)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    settings = Settings(
        # As scripts/develop gives it to Home Assistant: absolute, links resolved.
        config_dir=args.config_dir.resolve(),
        port=args.port,
        emulator_port=args.emulator_port,
        instance=args.instance,
        workspace_key=args.workspace_key,
        user=args.user,
        password=args.password,
    )
    try:
        asyncio.run(wait_ready(settings, args.ha_pid, args.emulator_pid, args.timeout))
    except NotReadyError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: scripts/develop stops both servers


if __name__ == "__main__":
    main()
