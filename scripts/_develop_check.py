"""Drive a running scripts/develop like a developer would (run inside the latest lane).

    python scripts/_develop_check.py CONFIG_DIR DEVELOP_PID

Logs in as dev / dev through the auth API, adds the ItanniX integration through the
config flow REST API with the emulator's URL and workspace key, types "hello" to
the ItanniX Assistant, and says "hello" to it through scripts/_satellite.py (a simulated
voice satellite running the "ItanniX" Assist pipeline). Exits non-zero at the first step that does not do what a user
would expect. Every wait is bounded.
"""

from __future__ import annotations

import array
import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import math
import os
from pathlib import Path
import sys
import time
from typing import Any
import wave

import aiohttp

HA_URL = "http://127.0.0.1:8123"
CLIENT_ID = "http://localhost:8123/"
EMULATOR_URL = "http://127.0.0.1:8765"
AGENT = "conversation.itannix_assistant"
START_TIMEOUT = 600.0
STEP_TIMEOUT = 120.0


# scripts/develop's process: a wait ends early once it is gone.
develop_pid = 0


class CheckFailedError(Exception):
    """A step did not do what it should."""


def step(text: str) -> None:
    """Report progress."""
    print(f"develop-check: {text}", flush=True)


async def poll[T](
    what: str, probe: Callable[[], Awaitable[T | None]], seconds: float
) -> T:
    """Retry ``probe`` until it returns a value, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (result := await probe()) is not None:
                return result
        except aiohttp.ClientError:
            pass
        try:
            os.kill(develop_pid, 0)
        except ProcessLookupError:
            raise CheckFailedError(
                f"scripts/develop exited while waiting for {what}"
            ) from None
        if time.monotonic() > deadline:
            raise CheckFailedError(f"timed out waiting for {what}")
        await asyncio.sleep(1)


async def login(http: aiohttp.ClientSession) -> str:
    """Log in as dev / dev the way the frontend does; return an access token."""
    async with http.post(
        "/auth/login_flow",
        json={
            "client_id": CLIENT_ID,
            "handler": ["homeassistant", None],
            "redirect_uri": f"{CLIENT_ID}?auth_callback=1",
        },
    ) as resp:
        flow = await resp.json()
    async with http.post(
        f"/auth/login_flow/{flow['flow_id']}",
        json={"client_id": CLIENT_ID, "username": "dev", "password": "dev"},
    ) as resp:
        result = await resp.json()
    if result.get("type") != "create_entry":
        raise CheckFailedError(f"login as dev / dev refused: {result}")
    async with http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": result["result"],
            "client_id": CLIENT_ID,
        },
    ) as resp:
        token: str = (await resp.json())["access_token"]
    return token


async def check(config_dir: Path) -> None:
    """Run every step; raise CheckFailedError on the first that fails."""
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    async with aiohttp.ClientSession(HA_URL, timeout=timeout) as http:

        async def frontend() -> bool | None:
            async with http.get("/manifest.json") as resp:
                return True if resp.status == 200 else None

        await poll("the frontend", frontend, START_TIMEOUT)
        step("the frontend answers on http://localhost:8123")

        # Written by scripts/develop before it starts Home Assistant.
        key_file = config_dir / ".emulator-workspace-key"
        key = key_file.read_text(encoding="utf-8").strip()
        token = await login(http)
        auth = {"Authorization": f"Bearer {token}"}
        step("logged in as dev / dev")

        async def running() -> bool | None:
            async with http.get("/api/config", headers=auth) as resp:
                body = await resp.json()
            return True if body.get("state") == "RUNNING" else None

        await poll("Home Assistant to finish starting", running, START_TIMEOUT)
        for entity_id in ("light.kitchen_light", "sensor.outdoor_temperature"):
            async with http.get(f"/api/states/{entity_id}", headers=auth) as resp:
                if resp.status != 200:
                    raise CheckFailedError(f"demo entity {entity_id} is missing")
        step("Home Assistant is running, with the demo light and sensor")

        async with http.post(
            "/api/config/config_entries/flow",
            headers=auth,
            json={"handler": "itannix", "show_advanced_options": False},
        ) as resp:
            form: dict[str, Any] = await resp.json()
        if form.get("type") != "form":
            raise CheckFailedError(f"the ItanniX config flow did not start: {form}")
        client_id = next(
            field["default"]
            for field in form["data_schema"]
            if field["name"] == "client_id"
        )
        async with http.post(
            f"/api/config/config_entries/flow/{form['flow_id']}",
            headers=auth,
            json={
                "workspace_key": key,
                "client_id": client_id,
                "base_url": EMULATOR_URL,
            },
        ) as resp:
            result = await resp.json()
        if result.get("type") != "create_entry":
            raise CheckFailedError(f"the config flow did not create an entry: {result}")
        step(f"config flow created the entry (state: {result['result']['state']})")

        async def agent() -> bool | None:
            async with http.get(f"/api/states/{AGENT}", headers=auth) as resp:
                return True if resp.status == 200 else None

        await poll(AGENT, agent, STEP_TIMEOUT)
        await converse(http, auth, "hello")
        await speak(config_dir, "hello")

        # A restart from the UI must bring Home Assistant back, entry and all.
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(
                "/api/services/homeassistant/restart", headers=auth
            ) as resp:
                await resp.read()

        async def down() -> bool | None:
            try:
                async with http.get("/api/config", headers=auth) as resp:
                    body = await resp.json()
            except aiohttp.ClientError:
                return True
            return True if body.get("state") != "RUNNING" else None

        await poll("Home Assistant to stop for the restart", down, STEP_TIMEOUT)
        await poll("Home Assistant to run again", running, START_TIMEOUT)
        await poll(AGENT, agent, STEP_TIMEOUT)
        step("restarted through homeassistant.restart")
        await converse(http, auth, "hello again")


async def converse(
    http: aiohttp.ClientSession, auth: dict[str, str], text: str
) -> None:
    """Type ``text`` to the ItanniX Assistant and expect the emulator's echo."""
    async with http.post(
        "/api/conversation/process",
        headers=auth,
        json={"text": text, "agent_id": AGENT},
    ) as resp:
        answer = await resp.json()
    speech = answer.get("response", {}).get("speech", {}).get("plain", {})
    reply = speech.get("speech")
    if reply != f"I heard: {text}":
        raise CheckFailedError(f"unexpected conversation answer: {answer}")
    step(f'"{text}" to {AGENT} -> "{reply}" (from the emulator)')


async def speak(config_dir: Path, text: str) -> None:
    """Say ``text`` through the simulated satellite; expect the emulator's spoken answer."""
    reply_file = config_dir / ".satellite-reply.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_satellite.py")),
        "--say",
        text,
        "--out",
        str(reply_file),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            output = (await proc.communicate())[0].decode(errors="replace")
    except TimeoutError:
        raise CheckFailedError("the simulated satellite did not finish") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = output.splitlines()
    # The emulator hears any speech as "hello" and answers it so.
    if proc.returncode != 0 or "reply: Hello from ItanniX." not in lines:
        raise CheckFailedError(f"unexpected spoken turn:\n{output}")
    if "transcript: hello" not in lines:
        raise CheckFailedError(f"unexpected transcript:\n{output}")
    with wave.open(str(reply_file), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
        samples = array.array("h", wav.readframes(wav.getnframes()))
    loudness = math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))
    if seconds < 0.5 or loudness < 300:
        raise CheckFailedError(
            f"the reply's audio is not the assistant's voice ({seconds:.1f} s, "
            f"RMS {loudness:.0f})"
        )
    step(
        f'said "{text}" through the ItanniX pipeline -> "Hello from ItanniX.", '
        f"{seconds:.1f} s of the assistant's voice"
    )


def main() -> None:
    """Run the check and exit with its verdict."""
    global develop_pid  # noqa: PLW0603 - set once, from the command line
    develop_pid = int(sys.argv[2])
    try:
        asyncio.run(check(Path(sys.argv[1])))
    except CheckFailedError as err:
        step(f"FAILED: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
