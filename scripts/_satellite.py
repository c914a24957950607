"""A simulated voice satellite for a running scripts/develop (run inside the latest lane).

    python scripts/_satellite.py (WAV | --say TEXT) [--out REPLY.wav] [--pipeline NAME]

Logs in to Home Assistant as dev / dev, runs the Assist pipeline NAME ("ItanniX") from
speech-to-text to text-to-speech over the websocket API, streams the audio at real time
(16 kHz mono 16-bit, as satellites send it) and then 1.5 s of silence, prints the
pipeline's events, and saves the reply's audio as WAV. Exits 1 when the pipeline reports
an error or a step fails; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
import io
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any, Final
import wave

from _develop_check import HA_URL, login
import aiohttp
import av

RATE: Final = 16_000
CHUNK: Final = 640  # 20 ms of 16 kHz mono s16
TRAILING_SILENCE: Final = 1.5
STEP_TIMEOUT: Final = 30.0
# The whole run, reply included (the pipeline itself is told the same).
PIPELINE_TIMEOUT: Final = 90


class SatelliteError(Exception):
    """A step did not do what it should."""


def say(text: str, directory: Path) -> Path:
    """Speech for ``text`` from espeak-ng, as a WAV file in ``directory``."""
    wav = directory / "say.wav"
    try:
        subprocess.run(
            ["espeak-ng", "-w", str(wav), text], check=True, timeout=STEP_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise SatelliteError(f"espeak-ng could not say {text!r}: {err}") from err
    return wav


def decode(source: Path | bytes) -> bytes:
    """Any audio file as 16 kHz mono s16 PCM."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    try:
        with av.open(
            io.BytesIO(source) if isinstance(source, bytes) else str(source)
        ) as c:
            for frame in c.decode(audio=0):
                for res in resampler.resample(frame):
                    out += bytes(res.planes[0])[: res.samples * 2]
        for res in resampler.resample(None):
            out += bytes(res.planes[0])[: res.samples * 2]
    except (av.error.FFmpegError, IndexError) as err:
        raise SatelliteError(f"cannot decode the audio: {err}") from err
    return bytes(out)


def write_wav(path: Path, pcm: bytes) -> None:
    """Save 16 kHz mono s16 PCM as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)


async def microphone(pcm: bytes) -> AsyncIterator[bytes]:
    """The audio, then silence, in 20 ms chunks at real time, as a satellite sends."""
    audio = pcm + bytes(int(RATE * TRAILING_SILENCE) * 2)
    start = time.monotonic()
    for i, offset in enumerate(range(0, len(audio), CHUNK)):
        await asyncio.sleep(max(0.0, start + i * CHUNK / (2 * RATE) - time.monotonic()))
        yield audio[offset : offset + CHUNK]


class Satellite:
    """One pipeline run over Home Assistant's websocket API."""

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        """Use a logged-in session."""
        self._http = http
        self._token = token
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0

    async def connect(self) -> None:
        """Open and authenticate the websocket."""
        self._ws = await self._http.ws_connect("/api/websocket")
        await self._receive()  # auth_required
        await self._ws.send_json({"type": "auth", "access_token": self._token})
        if (reply := await self._receive()).get("type") != "auth_ok":
            raise SatelliteError(f"websocket authentication refused: {reply}")

    async def close(self) -> None:
        """Close the websocket."""
        if self._ws is not None:
            await self._ws.close()

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        try:
            message = await self._ws.receive_json(timeout=STEP_TIMEOUT)
        except TimeoutError:
            raise SatelliteError("Home Assistant stopped answering") from None
        except (TypeError, ValueError) as err:
            raise SatelliteError(f"the websocket closed: {err}") from err
        if not isinstance(message, dict):
            raise SatelliteError(f"unexpected websocket message: {message}")
        return message

    async def command(self, payload: dict[str, Any]) -> int:
        """Send a command; return its id."""
        assert self._ws is not None
        self._next_id += 1
        await self._ws.send_json({"id": self._next_id, **payload})
        return self._next_id

    async def result(self, msg_id: int) -> Any:
        """The result of a command."""
        while (message := await self._receive()).get("id") != msg_id:
            pass
        if not message.get("success"):
            raise SatelliteError(f"Home Assistant refused: {message.get('error')}")
        return message.get("result")

    async def pipeline_id(self, name: str) -> str:
        """The id of the pipeline called ``name``."""
        listing = await self.result(
            await self.command({"type": "assist_pipeline/pipeline/list"})
        )
        ids = [p["id"] for p in listing["pipelines"] if p["name"] == name]
        if not ids:
            names = [p["name"] for p in listing["pipelines"]]
            raise SatelliteError(
                f"no Assist pipeline named {name!r} (there are {names}); "
                "add the ItanniX integration first"
            )
        return str(ids[0])

    async def talk(self, pipeline: str, pcm: bytes) -> dict[str, Any]:
        """Run the pipeline on ``pcm``; return its events' data by type."""
        assert self._ws is not None
        run_id = await self.command(
            {
                "type": "assist_pipeline/run",
                "start_stage": "stt",
                "end_stage": "tts",
                "input": {"sample_rate": RATE},
                "pipeline": pipeline,
                "timeout": PIPELINE_TIMEOUT,
            }
        )
        await self.result(run_id)
        events: dict[str, Any] = {}
        sender: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(PIPELINE_TIMEOUT + STEP_TIMEOUT):
                while True:
                    message = await self._receive()
                    if message.get("id") != run_id or message.get("type") != "event":
                        continue
                    event = message["event"]
                    kind, data = event["type"], event.get("data") or {}
                    events[kind] = data
                    report(kind, data)
                    if kind == "run-start":
                        handler = data["runner_data"]["stt_binary_handler_id"]
                        sender = asyncio.create_task(self._send_audio(handler, pcm))
                    elif kind in ("stt-vad-end", "stt-end") and sender is not None:
                        # Home Assistant heard the end of speech: stop the microphone.
                        sender.cancel()
                    elif kind == "error":
                        raise SatelliteError(
                            f"pipeline error {data.get('code')}: {data.get('message')}"
                        )
                    elif kind == "run-end":
                        return events
        except TimeoutError:
            raise SatelliteError("the pipeline did not finish in time") from None
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

    async def _send_audio(self, handler: int, pcm: bytes) -> None:
        assert self._ws is not None
        prefix = bytes([handler])
        try:
            async for chunk in microphone(pcm):
                await self._ws.send_bytes(prefix + chunk)
        finally:
            # The empty message ends the audio, however the stream stopped.
            if not self._ws.closed:
                await asyncio.shield(self._ws.send_bytes(prefix))

    async def download(self, url: str) -> bytes:
        """Fetch the reply's audio."""
        async with self._http.get(
            url, headers={"Authorization": f"Bearer {self._token}"}
        ) as resp:
            if resp.status != 200:
                raise SatelliteError(f"the reply's audio URL answered {resp.status}")
            return await resp.read()


def report(kind: str, data: dict[str, Any]) -> None:
    """Print what a developer wants to see of a pipeline event."""
    if kind == "stt-end":
        print(f"transcript: {data.get('stt_output', {}).get('text')}", flush=True)
    elif kind == "intent-end":
        response = data.get("intent_output", {}).get("response", {})
        speech = response.get("speech", {}).get("plain", {}).get("speech")
        print(f"reply: {speech}", flush=True)
    elif kind == "tts-end":
        print(f"tts: {data.get('tts_output', {}).get('url')}", flush=True)
    elif kind == "error":
        print(f"error: {data.get('code')}: {data.get('message')}", flush=True)
    elif kind != "intent-progress":
        print(f"[{kind}]", flush=True)


async def run(args: argparse.Namespace) -> None:
    """Log in, talk, save the reply."""
    if args.say:
        with tempfile.TemporaryDirectory() as tmp:
            pcm = decode(say(args.say, Path(tmp)))
    else:
        pcm = decode(Path(args.wav))
    if not pcm:
        raise SatelliteError("the input has no audio")
    print(f"speaking {len(pcm) / (2 * RATE):.1f} s of audio", flush=True)
    timeout = aiohttp.ClientTimeout(total=PIPELINE_TIMEOUT + STEP_TIMEOUT)
    async with aiohttp.ClientSession(args.url, timeout=timeout) as http:
        try:
            token = await login(http)
        except (aiohttp.ClientError, KeyError, ValueError) as err:
            raise SatelliteError(f"cannot log in to {args.url}: {err}") from err
        satellite = Satellite(http, token)
        try:
            await satellite.connect()
            events = await satellite.talk(
                await satellite.pipeline_id(args.pipeline), pcm
            )
            url = events.get("tts-end", {}).get("tts_output", {}).get("url")
            if not url:
                raise SatelliteError("the pipeline produced no reply audio")
            reply = decode(await satellite.download(url))
        except aiohttp.ClientError as err:
            raise SatelliteError(f"Home Assistant connection failed: {err}") from err
        finally:
            await satellite.close()
    write_wav(Path(args.out), reply)
    print(f"reply audio: {len(reply) / (2 * RATE):.1f} s", flush=True)


def main() -> None:
    """Parse arguments, run, exit with the verdict."""
    parser = argparse.ArgumentParser(
        prog="scripts/satellite",
        description="Speak to the ItanniX pipeline of a running scripts/develop.",
    )
    parser.add_argument("wav", nargs="?", help="audio file to say (any rate)")
    parser.add_argument("--say", help="text to say (spoken with espeak-ng)")
    parser.add_argument("--out", default="reply.wav", help="where the reply goes")
    parser.add_argument("--pipeline", default="ItanniX", help="Assist pipeline name")
    parser.add_argument("--url", default=HA_URL, help="Home Assistant URL")
    args = parser.parse_args()
    if bool(args.wav) == bool(args.say):
        parser.error("give a WAV file or --say TEXT (one of them)")
    try:
        asyncio.run(run(args))
    except SatelliteError as err:
        print(f"satellite: FAILED: {err}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
