"""scripts/develop's Wyoming satellite: wyoming-satellite and its sound "hardware".

    python scripts/_develop_satellite.py run ARGS...  # python -m wyoming_satellite ARGS
    python scripts/_develop_satellite.py mic DIR      # its --mic-command
    python scripts/_develop_satellite.py wake         # its --wake-command
    python scripts/_develop_satellite.py snd DIR      # its --snd-command

All run with the Python of wyoming-satellite's own venv (it pins an older `wyoming`
than Home Assistant's). `run` is `python -m wyoming_satellite` that also answers Home
Assistant's ping: Home Assistant pings a satellite and drops the connection when no
pong comes within 5 s, and the newest wyoming-satellite on PyPI (1.0.0) predates that
(later releases, not published there, answer it the same way). The others use the
standard library only. No sound card:

- mic: 16 kHz mono 16-bit PCM on stdout at real time: silence, and each WAV file put
  in DIR/say/ (16 kHz mono 16-bit, as `scripts/satellite --wyoming` writes them), in
  name order, once, then deleted.
- wake: reads the same PCM on stdin and "detects the wake word" (prints its name) when
  sound starts after at least half a second of quiet: any speech wakes it.
- snd: reads what the satellite plays (22.05 kHz mono 16-bit PCM) on stdin until it
  ends, saves it as DIR/played.wav and appends one line to DIR/played.log.
"""

from __future__ import annotations

import array
import math
import os
from pathlib import Path
import sys
import time
import wave

RATE = 16_000
SND_RATE = 22_050
CHUNK_SAMPLES = 320  # 20 ms at 16 kHz
CHUNK_BYTES = CHUNK_SAMPLES * 2
WAKE_WORD = "any_speech"
# RMS of 16-bit samples: espeak-ng speech is in the thousands, silence is 0.
LOUD = 500.0
QUIET_CHUNKS = 25  # 0.5 s


def _pcm_of(path: Path) -> bytes:
    """The frames of a 16 kHz mono 16-bit WAV file; nothing for any other file."""
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (
                RATE,
                1,
                2,
            ):
                print(f"mic: {path.name} is not 16 kHz mono 16-bit", file=sys.stderr)
                return b""
            return wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as err:
        print(f"mic: cannot read {path.name}: {err}", file=sys.stderr)
        return b""


def mic(directory: Path) -> None:
    """Silence, and the queued WAV files, paced at real time."""
    queue = directory / "say"
    queue.mkdir(parents=True, exist_ok=True)
    out = sys.stdout.buffer
    pending = b""
    start = time.monotonic()
    sent = 0
    while True:
        if not pending:
            for path in sorted(queue.glob("*.wav")):
                pending = _pcm_of(path)
                path.unlink(missing_ok=True)
                if pending:
                    print(f"mic: saying {path.name}", file=sys.stderr, flush=True)
                    break
        chunk, pending = pending[:CHUNK_BYTES], pending[CHUNK_BYTES:]
        out.write(chunk.ljust(CHUNK_BYTES, b"\0"))
        out.flush()
        sent += 1
        time.sleep(max(0.0, start + sent * CHUNK_SAMPLES / RATE - time.monotonic()))


def _rms(chunk: bytes) -> float:
    samples = array.array("h", chunk[: len(chunk) // 2 * 2])
    return math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))


def wake() -> None:
    """Print the wake word when sound follows quiet."""
    source = sys.stdin.buffer
    quiet = QUIET_CHUNKS
    while chunk := source.read(CHUNK_BYTES):
        if _rms(chunk) < LOUD:
            quiet += 1
            continue
        if quiet >= QUIET_CHUNKS:
            print(WAKE_WORD, flush=True)
        quiet = 0


def snd(directory: Path) -> None:
    """Save one playback and log its length."""
    directory.mkdir(parents=True, exist_ok=True)
    audio = sys.stdin.buffer.read()
    partial = directory / "played.wav.partial"
    with wave.open(str(partial), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SND_RATE)
        wav.writeframes(audio)
    os.replace(partial, directory / "played.wav")
    seconds = len(audio) / 2 / SND_RATE
    line = f"{time.strftime('%H:%M:%S')} played {seconds:.1f} s (RMS {_rms(audio):.0f})"
    with (directory / "played.log").open("a", encoding="utf-8") as log:
        log.write(line + "\n")
    print(f"snd: {line}", file=sys.stderr, flush=True)


def run(args: list[str]) -> None:
    """wyoming-satellite's own main, answering Home Assistant's ping."""
    # wyoming-satellite is only in its venv, not where this file is linted.
    import asyncio  # noqa: PLC0415

    from wyoming.event import Event  # noqa: PLC0415
    import wyoming_satellite.__main__ as satellite  # noqa: PLC0415

    handler = satellite.SatelliteEventHandler
    handle_event = handler.handle_event

    async def handle_ping(self: object, event: Event) -> bool:
        if event.type == "ping":
            data = {"text": (event.data or {}).get("text")}
            await self.write_event(Event(type="pong", data=data))  # type: ignore[attr-defined]
            return True
        return await handle_event(self, event)

    handler.handle_event = handle_ping
    sys.argv = ["wyoming_satellite", *args]
    asyncio.run(satellite.main())


def main() -> None:
    """Run one of the four."""
    match sys.argv[1:]:
        case ["run", *args]:
            run(args)
        case ["mic", directory]:
            mic(Path(directory))
        case ["wake"]:
            wake()
        case ["snd", directory]:
            snd(Path(directory))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
