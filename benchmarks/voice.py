"""Voice latency through Home Assistant vs the bare library: ``scripts/bench voice``.

``python -m benchmarks.voice [--turns N] [--quick]``

Runs ``benchmarks/voice_turns.py`` (a real Home Assistant in its test harness, a real
Assist satellite, the emulator in the same process) and prints one table from that run:
each latency through Home Assistant beside the bare library's, as medians, p90s and
ratios (ours / baseline).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
from types import FrameType
from typing import Any, Final

from .measure import median, p90

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
MODULE: Final = "benchmarks/voice_turns.py"
# Home Assistant's start plus a bounded wait per turn: a stuck run fails, never hangs.
_BASE_TIMEOUT: Final = 120.0
_TURN_TIMEOUT: Final = 40.0


def _parse_args(argv: list[str] | None) -> tuple[int, int]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench voice",
        description=(
            "Voice latency through Home Assistant's Assist pipeline vs the bare "
            "realtime library, against the emulator."
        ),
    )
    parser.add_argument("--turns", type=int, help="spoken turns per side (default 8)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 turns per side, no warm-up (a smoke run)",
    )
    args = parser.parse_args(argv)
    turns, warmups = (2, 0) if args.quick else (8, 1)
    turns = args.turns or turns
    if turns < 1:
        parser.error("--turns must be >= 1")
    return turns, warmups


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the harness process below is stopped too.
    raise KeyboardInterrupt


def _run(turns: int, warmups: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "samples.json"
        env = {
            **os.environ,
            "ITANNIX_BENCH_TURNS": str(turns),
            "ITANNIX_BENCH_WARMUP": str(warmups),
            "ITANNIX_BENCH_OUT": str(out),
        }
        proc = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", MODULE],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            log, _ = proc.communicate(
                timeout=_BASE_TIMEOUT + _TURN_TIMEOUT * 2 * (turns + warmups)
            )
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
        if proc.returncode != 0 or not out.exists():
            sys.stderr.write(log[-6000:])
            raise SystemExit(f"the voice benchmark failed ({proc.returncode})")
        samples: dict[str, list[float]] = json.loads(out.read_text(encoding="utf-8"))
        return samples


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}" if base > 0 else "n/a"


def _table(turns: int, warmups: int, s: dict[str, Any]) -> str:
    rows = [
        (
            "end of speech -> STT result, median (ms)",
            s["stt_ours"],
            s["stt_bare"],
            median,
        ),
        ("end of speech -> STT result, p90 (ms)", s["stt_ours"], s["stt_bare"], p90),
        ("reply audio -> TTS bytes, median (ms)", s["tts_ours"], s["tts_bare"], median),
        ("reply audio -> TTS bytes, p90 (ms)", s["tts_ours"], s["tts_bare"], p90),
        (
            "reply audio -> TTS bytes via ffmpeg, median (ms)",
            s["tts_converted"],
            s["tts_bare"],
            median,
        ),
        (
            "reply audio -> TTS bytes via ffmpeg, p90 (ms)",
            s["tts_converted"],
            s["tts_bare"],
            p90,
        ),
    ]
    figures = [(name, stat(ours), stat(base)) for name, ours, base, stat in rows]
    width = max(len(name) for name, _, _ in figures)
    lines = [
        (
            "ItanniX voice path through Home Assistant vs the bare library: one run, "
            "medians, ratio = ours / baseline"
        ),
        "",
        f"{'metric':<{width}} | {'ours':>9} | {'baseline':>9} | {'ratio':>5}",
        f"{'-' * width}-+-{'-' * 9}-+-{'-' * 9}-+-{'-' * 5}",
    ]
    lines += [
        f"{name:<{width}} | {ours:>9.1f} | {base:>9.1f} | {_ratio(ours, base):>5}"
        for name, ours, base in figures
    ]
    warm = f"after {warmups} warm-up each" if warmups else "no warm-up"
    lines += [
        "",
        (
            f"N = {turns} spoken turns per side ({warm}), interleaved, one session per "
            "side kept across turns; emulator and both sides in one process and loop"
        ),
        (
            "ours:     real Assist satellites through Home Assistant's pipeline (STT, "
            "conversation, TTS entities), fetching the reply's audio URL as streaming "
            "satellites do; STT from both satellites' turns (2N)"
        ),
        (
            "          TTS bytes: a satellite that takes any WAV (Home Assistant passes "
            "our stream on); via ffmpeg: one asking for 16 kHz mono 16-bit WAV, as "
            "ESPHome satellites do (Home Assistant up to 2026.10 converts it with "
            "ffmpeg even so; 2026.11 passes 16-bit WAV at the asked rate through)"
        ),
        (
            "baseline: RealtimeSession.start_audio_turn() on the same emulator, "
            "no Home Assistant"
        ),
        (
            "STT:      emulator sends input_audio_buffer.speech_stopped -> stt-end "
            "pipeline event / AudioTurn.transcript() returns"
        ),
        (
            "TTS:      emulator sends output_audio_buffer.started (first reply frame "
            "on its track) -> first voiced sample in the TTS URL's body (after the "
            "WAV header) / out of AudioTurn.reply_audio()"
        ),
        (
            f"          reply: {s['reply_chars']}-character answer (over Home Assistant's "
            "60-character threshold, so its pipeline streams it to TTS); "
            f"{median(s['reply_seconds_ours']):.1f} s of audio played per turn"
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the voice benchmark and print its table."""
    turns, warmups = _parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        samples = _run(turns, warmups)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: the benchmark's Home Assistant stopped\n")
        sys.exit(130)
    sys.stdout.write(_table(turns, warmups, samples) + "\n")


if __name__ == "__main__":
    main()
