"""Drive a running scripts/develop like a developer would (run inside the latest lane).

    python scripts/_develop_check.py CONFIG_DIR DEVELOP_PID [--port N] [--emulator-port M]
        [--satellite]

Logs in as dev / dev through the auth API, adds the ItanniX integration through the
config flow REST API with the emulator's URL and workspace key, types "hello" to
the ItanniX Assistant, types the two turns of the example turns file (a dashboard
function the example automation answers, and set_device_volume), and says "hello" to
it through scripts/_satellite.py (a simulated voice satellite running the "ItanniX"
Assist pipeline). Then the development media player: itannix.start_conversation on it
must make it download the line from Home Assistant's internal URL. With --satellite
(scripts/develop --satellite), the real Wyoming satellite: its assistant set to the
ItanniX pipeline, speech put in its microphone must come back as the assistant's voice
on its speaker, and itannix.start_conversation must make it play the line. Then
reauthentication end to end: the emulator's admin endpoint
resets the enrollment, another device takes the Client ID, the next conversation is
refused and Home Assistant starts the reauth flow, which succeeds once the enrollment
is reset again. Exits non-zero at the first step that does not do what a user would
expect. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import array
import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import json
import math
import os
from pathlib import Path
import secrets
import sys
import tempfile
import time
from typing import Any
import wave

import aiohttp

# scripts/develop's default port (scripts/_satellite.py's default URL); the login's
# client ID works for any port.
HA_URL = "http://127.0.0.1:8123"
CLIENT_ID = "http://localhost:8123/"
AGENT = "conversation.itannix_assistant"
PLAYER = "media_player.dev_speaker"
# Where a media player fetches a live reply from, and who serves it there.
LIVE_REPLY_PATHS = (
    ("/api/tts_proxy/", "Home Assistant's TTS proxy"),
    ("/api/itannix/audio/", "the integration's relay"),
)
SATELLITE = "assist_satellite.dev_satellite"
SATELLITE_PIPELINE = "select.dev_satellite_assistant"
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


async def check(
    config_dir: Path, ha_url: str, emulator_url: str, *, satellite: bool
) -> None:
    """Run every step; raise CheckFailedError on the first that fails."""
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    async with aiohttp.ClientSession(ha_url, timeout=timeout) as http:

        async def frontend() -> bool | None:
            async with http.get("/manifest.json") as resp:
                return True if resp.status == 200 else None

        await poll("the frontend", frontend, START_TIMEOUT)
        step(f"the frontend answers on {ha_url}")

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
                "base_url": emulator_url,
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
        # The example turns file scripts/develop wrote (turns.json) and the example
        # automation in automations.yaml.
        await converse(http, auth, "what is the temperature outside", expect="18.5")
        await converse(
            http, auth, "set the volume to 30", expect="This is a typed conversation"
        )
        await speak(config_dir, "hello", ha_url)
        await media_player(http, auth, ha_url)
        await wyoming_satellite(http, auth, config_dir / "satellite", run=satellite)
        await reauthenticate(http, auth, emulator_url, key, client_id)

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
    http: aiohttp.ClientSession,
    auth: dict[str, str],
    text: str,
    expect: str | None = None,
) -> dict[str, Any]:
    """Type ``text`` in a new conversation; expect the emulator's echo or ``expect``.

    ``expect`` is a part of the reply (a scripted turn's); "" takes any answer.
    """
    async with http.post(
        "/api/conversation/process",
        headers=auth,
        json={"text": text, "agent_id": AGENT},
    ) as resp:
        answer: dict[str, Any] = await resp.json()
    speech = answer.get("response", {}).get("speech", {}).get("plain", {})
    reply = speech.get("speech")
    if expect == "":
        return answer
    if expect is None:
        matches = reply == f"I heard: {text}"
    else:
        matches = isinstance(reply, str) and expect in reply
    if not matches:
        raise CheckFailedError(f"unexpected conversation answer: {answer}")
    step(f'"{text}" to {AGENT} -> "{reply}"')
    return answer


async def service(
    http: aiohttp.ClientSession, auth: dict[str, str], name: str, data: dict[str, Any]
) -> None:
    """Call an action; it must succeed."""
    async with http.post(f"/api/services/{name}", headers=auth, json=data) as resp:
        if resp.status != 200:
            raise CheckFailedError(f"{name} failed: {resp.status} {await resp.text()}")


async def media_player(
    http: aiohttp.ClientSession, auth: dict[str, str], ha_url: str
) -> None:
    """The assistant speaks first on the dev speaker, which fetches the line.

    From Home Assistant's internal URL: this instance on loopback, not the LAN address.
    """

    async def attributes() -> dict[str, Any] | None:
        async with http.get(f"/api/states/{PLAYER}", headers=auth) as resp:
            if resp.status != 200:
                raise CheckFailedError(f"{PLAYER} is missing")
            return dict((await resp.json())["attributes"])

    before = await attributes()
    assert before is not None
    await service(
        http,
        auth,
        "itannix/start_conversation",
        {"entity_id": PLAYER, "message": "The dinner is ready."},
    )

    async def played() -> dict[str, Any] | None:
        now = await attributes()
        return now if now and now["plays"] > before["plays"] else None

    now = await poll(f"{PLAYER} to play the line", played, STEP_TIMEOUT)
    if not str(now["last_media"]).startswith(f"{ha_url}/"):
        raise CheckFailedError(f"{PLAYER} was handed {now['last_media']}")
    # ItanniX text-to-speech of the emulator: a few kilobytes of MP3 at least.
    if now["last_bytes"] < 1000:
        raise CheckFailedError(f"{PLAYER} fetched only {now['last_bytes']} bytes")
    step(
        f"itannix.start_conversation on {PLAYER}: it fetched {now['last_bytes']} "
        f"bytes from {now['last_media'].split('/api/')[0]}"
    )


def _played(directory: Path) -> int:
    """How many playbacks the Wyoming satellite's speaker logged."""
    try:
        return len((directory / "played.log").read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return 0


def _loud_seconds(path: Path) -> tuple[float, float]:
    """Length and RMS of a WAV file."""
    with wave.open(str(path), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
        samples = array.array("h", wav.readframes(wav.getnframes()))
    return seconds, math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))


def write_wav(path: Path, pcm: bytes) -> None:
    """16 kHz mono 16-bit PCM as a WAV file (what the satellite's microphone takes)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(pcm)


async def wyoming_satellite(
    http: aiohttp.ClientSession, auth: dict[str, str], directory: Path, *, run: bool
) -> None:
    """Speech into the real satellite's microphone; its reply on its speaker."""
    if not run:
        return
    from _satellite import decode, say  # noqa: PLC0415 - imports this

    await service(
        http,
        auth,
        "select/select_option",
        {"entity_id": SATELLITE_PIPELINE, "option": "ItanniX"},
    )

    async def playback(before: int, what: str) -> str:
        async def grew() -> bool | None:
            return True if _played(directory) > before else None

        await poll(what, grew, STEP_TIMEOUT)
        seconds, loudness = _loud_seconds(directory / "played.wav")
        if seconds < 0.5 or loudness < 300:
            raise CheckFailedError(
                f"{what}: not the assistant's voice ({seconds:.1f} s, RMS {loudness:.0f})"
            )
        return f"{seconds:.1f} s of the assistant's voice"

    before = _played(directory)
    mic = directory / "say"
    with tempfile.TemporaryDirectory() as tmp:
        pcm = decode(say("hello", Path(tmp)))
    # Whole or not at all: the microphone takes *.wav files only.
    write_wav(mic / "check.wav.partial", pcm)
    (mic / "check.wav.partial").rename(mic / "check.wav")
    heard = await playback(before, "the Wyoming satellite to play the reply")
    step(
        f'said "hello" into the Wyoming satellite\'s microphone -> {heard} on its speaker'
    )

    before = _played(directory)
    await service(
        http,
        auth,
        "itannix/start_conversation",
        {"entity_id": SATELLITE, "message": "The dinner is ready."},
    )
    heard = await playback(before, "the Wyoming satellite to announce")
    step(f"itannix.start_conversation on {SATELLITE} -> {heard}")
    await live_reply_on_player(http, auth, directory, pcm)


async def live_reply_on_player(
    http: aiohttp.ClientSession, auth: dict[str, str], directory: Path, pcm: bytes
) -> None:
    """With the Dev speaker in the options, a spoken reply plays there instead.

    A scripted spoken turn whose reply is long enough (over 60 characters) that Home
    Assistant streams it rather than serving a cached recording.
    """
    turns_file = directory.parent / "turns.json"
    turns = json.loads(turns_file.read_text(encoding="utf-8"))
    reply = (
        "This reply is long enough to be streamed live, so the Dev speaker plays it."
    )
    turns_file.write_text(
        json.dumps([{"reply": reply}, *turns], indent=2), encoding="utf-8"
    )
    async with http.get(
        "/api/config/config_entries/entry?domain=itannix", headers=auth
    ) as resp:
        entry_id = (await resp.json())[0]["entry_id"]
    async with http.post(
        "/api/config/config_entries/options/flow",
        headers=auth,
        json={"handler": entry_id},
    ) as resp:
        flow = await resp.json()
    async with http.post(
        f"/api/config/config_entries/options/flow/{flow['flow_id']}",
        headers=auth,
        json={"llm_hass_api": ["assist"], "media_player": PLAYER},
    ) as resp:
        if (await resp.json()).get("type") != "create_entry":
            raise CheckFailedError("the options did not take the Dev speaker")

    async def attributes() -> dict[str, Any] | None:
        async with http.get(f"/api/states/{PLAYER}", headers=auth) as resp:
            return dict((await resp.json())["attributes"])

    async def loaded() -> bool | None:
        async with http.get(f"/api/states/{AGENT}", headers=auth) as resp:
            return True if resp.status == 200 else None

    await poll("the entry to reload with the new options", loaded, STEP_TIMEOUT)
    before = await attributes()
    assert before is not None
    mic = directory / "say"
    write_wav(mic / "relay.wav.partial", pcm)
    (mic / "relay.wav.partial").rename(mic / "relay.wav")

    async def played() -> dict[str, Any] | None:
        now = await attributes()
        return now if now and now["plays"] > before["plays"] else None

    now = await poll(f"{PLAYER} to play the live reply", played, STEP_TIMEOUT)
    # Home Assistant 2026.11 serves it from its TTS proxy; before, the integration's
    # relay does.
    served_by = next(
        (name for path, name in LIVE_REPLY_PATHS if path in str(now["last_media"])),
        None,
    )
    if served_by is None or now["last_bytes"] < 20000:
        raise CheckFailedError(
            f"{PLAYER} played {now['last_media']} ({now['last_bytes']} bytes), "
            "not the live reply"
        )
    step(
        f"with {PLAYER} in the options, a spoken reply on the Wyoming satellite played "
        f"there: {now['last_bytes']} bytes from {served_by}"
    )


async def reauth_flows(http: aiohttp.ClientSession, token: str) -> list[dict[str, Any]]:
    """The ItanniX reauth flows in progress (what Settings shows as needing attention)."""
    async with http.ws_connect("/api/websocket") as ws:
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        if (await ws.receive_json()).get("type") != "auth_ok":
            raise CheckFailedError("the websocket API refused the login")
        await ws.send_json({"id": 1, "type": "config_entries/flow/progress"})
        result = await ws.receive_json()
    return [
        flow
        for flow in result.get("result") or []
        if flow.get("handler") == "itannix"
        and flow.get("context", {}).get("source") == "reauth"
    ]


async def reauthenticate(
    http: aiohttp.ClientSession,
    auth: dict[str, str],
    emulator_url: str,
    key: str,
    client_id: str,
) -> None:
    """Reset the enrollment through the emulator's admin API; reauth end to end."""
    token = auth["Authorization"].removeprefix("Bearer ")
    async with aiohttp.ClientSession(emulator_url, timeout=http.timeout) as emulator:

        async def reset() -> None:
            async with emulator.post(f"/_admin/enrollments/{client_id}/reset") as resp:
                if resp.status != 204:
                    raise CheckFailedError(f"the admin reset answered {resp.status}")

        await reset()
        # The reset alone lets Home Assistant's own secret enroll again (TOFU); what
        # makes it refused is another device enrolling the Client ID first.
        other = {
            "X-Workspace-Key": key,
            "X-Client-Id": client_id,
            "X-Client-Secret": secrets.token_hex(24),
        }
        async with emulator.get("/v1/app/voices", headers=other) as resp:
            if resp.status != 200:
                raise CheckFailedError(
                    f"another device could not enroll: {resp.status}"
                )
        step("reset the enrollment (admin API); another device enrolled the Client ID")

        answer = await converse(http, auth, "hello after the reset", expect="")
        if answer.get("response", {}).get("response_type") != "error":
            raise CheckFailedError(f"a refused secret still got an answer: {answer}")

        async def flow_started() -> list[dict[str, Any]] | None:
            return await reauth_flows(http, token) or None

        flow = (await poll("the reauth flow", flow_started, STEP_TIMEOUT))[0]
        step(f"the next conversation was refused; reauth flow {flow['step_id']!r} open")

        # The dashboard's "reset secret", then the reauth form is submitted.
        await reset()
        async with http.post(
            f"/api/config/config_entries/flow/{flow['flow_id']}", headers=auth, json={}
        ) as resp:
            result = await resp.json()
        if result.get("reason") != "reauth_successful":
            raise CheckFailedError(f"the reauth flow did not succeed: {result}")

    async def answered() -> bool | None:
        answer = await converse(http, auth, "hello after reauth", expect="")
        speech = answer.get("response", {}).get("speech", {}).get("plain", {})
        return True if speech.get("speech") == "I heard: hello after reauth" else None

    await poll("a conversation after the reauth", answered, STEP_TIMEOUT)
    step('reauth flow submitted after a new reset -> "hello after reauth" answered')


async def speak(config_dir: Path, text: str, ha_url: str) -> None:
    """Say ``text`` through the simulated satellite; expect the emulator's spoken answer."""
    reply_file = config_dir / ".satellite-reply.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_satellite.py")),
        "--say",
        text,
        "--url",
        ha_url,
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
    parser = argparse.ArgumentParser(prog="scripts/_develop_check.py")
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("develop_pid", type=int)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--emulator-port", type=int, default=8765)
    parser.add_argument("--satellite", action="store_true")
    args = parser.parse_args()
    develop_pid = args.develop_pid
    ha_url = f"http://127.0.0.1:{args.port}"
    emulator_url = f"http://127.0.0.1:{args.emulator_port}"
    try:
        asyncio.run(
            check(args.config_dir, ha_url, emulator_url, satellite=args.satellite)
        )
    except CheckFailedError as err:
        step(f"FAILED: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
