"""Voice latency through Home Assistant vs the bare library: ``scripts/bench voice``.

``python -m benchmarks.voice [--turns N] [--quick] [--samples-out FILE]`` runs
``benchmarks/voice_turns.py`` in this interpreter (one lane: a real Home Assistant in
its test harness, real Assist satellites of three kinds, the emulator in the same
process) and prints its table, or writes its samples to FILE.
``python -m benchmarks.voice --table FILE...`` prints the samples of several lanes side
by side. ``scripts/bench voice --lane oldest|latest|both`` does both steps.

Every figure is beside the bare library's from the same run (medians, p90s, ratio =
ours / baseline).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
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
from .voice_formats import KINDS

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
MODULE: Final = "benchmarks/voice_turns.py"
# Home Assistant's start plus a bounded wait per round: a stuck run fails, never hangs.
_BASE_TIMEOUT: Final = 120.0
_ROUND_TIMEOUT: Final = 120.0
_METRIC: Final = 62
_CELL: Final = 7

Stat = Callable[[Sequence[float]], float]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench voice",
        description=(
            "Voice latency through Home Assistant's Assist pipeline, per satellite "
            "format, vs the bare realtime library, against the emulator."
        ),
    )
    parser.add_argument("--turns", type=int, help="rounds of turns (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, no warm-up (a smoke run)"
    )
    parser.add_argument("--samples-out", type=Path, help="write the samples here")
    parser.add_argument(
        "--table", type=Path, nargs="+", help="print these lanes' samples side by side"
    )
    args = parser.parse_args(argv)
    turns, warmups = (1, 0) if args.quick else (5, 1)
    args.turns = args.turns or turns
    args.warmups = warmups
    if args.turns < 1:
        parser.error("--turns must be >= 1")
    return args


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the harness process below is stopped too.
    raise KeyboardInterrupt


def _run(turns: int, warmups: int) -> dict[str, Any]:
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
                timeout=_BASE_TIMEOUT + _ROUND_TIMEOUT * (turns + warmups)
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
        samples: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        samples["turns"], samples["warmups"] = turns, warmups
        return samples


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}" if base > 0 else "n/a"


def _minus(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


Row = tuple[str, list[float] | None, list[float] | None, Stat]


def _rows(s: dict[str, Any]) -> list[Row]:
    """(metric, ours, baseline, statistic) for one lane's samples (None: not run)."""
    kinds = s["kinds"]
    ours_only = [v for key, v in kinds.items() if "/" not in key]
    rows: list[Row] = [
        ("end of speech -> STT result, median", s["stt_ours"], s["stt_bare"], median),
        (
            "service: end of speech -> first reply frame sent, median",
            [x for k in ours_only for x in k["service"]],
            s["bare_service"],
            median,
        ),
        (
            "service: end of speech -> reply complete (response.done)",
            [x for k in ours_only for x in k["done"]],
            None,
            median,
        ),
    ]
    bare_ours = _minus(s["bare"], s["bare_service"])
    for kind in KINDS:
        k = kinds[kind.key]
        service = k["done" if kind.waits_for == "response.done" else "service"]
        converted = kinds.get(f"{kind.key}/converted")
        rows += [
            (
                f"{kind.label}: HA asks our TTS for it, median",
                k.get("asked"),
                None,
                median,
            ),
            (
                f"{kind.label}: voice leaves our TTS, median",
                k["exit"],
                s["bare"],
                median,
            ),
            (
                f"{kind.label}: voice at satellite, median",
                k["satellite"],
                s["bare"],
                median,
            ),
            (f"{kind.label}: voice at satellite, p90", k["satellite"], s["bare"], p90),
            (
                f"{kind.label}: ours (at satellite - service), median",
                _minus(k["satellite"], service),
                bare_ours,
                median,
            ),
            (
                f"{kind.label}: at satellite, HA converting, median",
                converted and converted["satellite"],
                s["bare"],
                median,
            ),
        ]
    return rows


def _cells(ours: list[float] | None, base: list[float] | None, stat: Stat) -> str:
    if not ours:
        return f" | {'-':>{_CELL}} | {'-':>{_CELL}} | {'-':>{_CELL - 2}}"
    o = stat(ours)
    if not base:
        return f" | {o:>{_CELL}.1f} | {'-':>{_CELL}} | {'-':>{_CELL - 2}}"
    b = stat(base)
    return f" | {o:>{_CELL}.1f} | {b:>{_CELL}.1f} | {_ratio(o, b):>{_CELL - 2}}"


def _lane_name(path: Path, s: dict[str, Any]) -> str:
    return f"{s.get('lane') or path.stem} (HA {s['ha_version']})"


def _table(lanes: list[tuple[str, dict[str, Any]]]) -> str:
    """One table, the lanes side by side."""
    header = f"{'metric (ms from the emulator end of speech)':<{_METRIC}}"
    sub = " " * _METRIC
    for name, _ in lanes:
        header += f" | {name:^{3 * _CELL + 6}}"
        sub += f" | {'ours':>{_CELL}} | {'bare':>{_CELL}} | {'ratio':>{_CELL - 2}}"
    lines = [
        (
            "ItanniX voice path through Home Assistant vs the bare library, per "
            "satellite format: one run per lane, ratio = ours / baseline"
        ),
        "",
        header,
        sub,
        "-" * len(sub),
    ]
    per_lane = [_rows(s) for _, s in lanes]
    for index, (metric, *_rest) in enumerate(per_lane[0]):
        line = f"{metric:<{_METRIC}}"
        for rows in per_lane:
            _, ours, base, stat = rows[index]
            line += _cells(ours, base, stat)
        lines.append(line)
    lines += ["", *_notes(lanes)]
    return "\n".join(lines)


def _notes(lanes: list[tuple[str, dict[str, Any]]]) -> list[str]:
    first = lanes[0][1]
    knobs = ", ".join(f"{k}={v}" for k, v in first["knobs"].items())
    warm = (
        f"after {first['warmups']} warm-up round" if first["warmups"] else "no warm-up"
    )
    notes = [
        (
            f"N = {first['turns']} rounds per lane ({warm}): one spoken turn per "
            "satellite kind, then one of the bare library; one session per side kept "
            "across turns; emulator and both sides in one process and loop"
        ),
        (
            f"service (emulator knobs): {knobs}; its VAD ends speech after "
            f"{first['vad_silence_ms']:.0f} ms of silence (the clock starts at its "
            "speech_stopped); the reply is synthesized (espeak-ng) before its first "
            "frame"
        ),
        (
            "ours: real Assist satellites through Home Assistant's pipeline, each "
            "asking for its format and reading the TTS stream as its integration "
            "does: ESPHome in-process from tts-end, in 512-sample chunks; Voice PE "
            "fetching the TTS URL from run-start; Wyoming in-process from "
            "intent-progress (tts_start_streaming)"
        ),
        (
            "baseline (bare): RealtimeSession.start_audio_turn() on the same emulator, "
            "no Home Assistant: first voiced audio out of AudioTurn.reply_audio()"
        ),
        (
            "voice = first voiced sample (|s16| > 300), decoded as it arrives (FLAC "
            "frame by frame); 'ours' rows subtract the service's part turn by turn: "
            "its first reply frame, or for ESPHome (which reads from tts-end, after "
            "the conversation stage) its response.done"
        ),
        (
            "HA converting: the same satellite with our entity as before it encoded "
            "formats (16 kHz WAV whatever was asked; Home Assistant runs ffmpeg), in "
            "the same run"
        ),
        (
            f"reply: {first['reply_chars']}-character answer (over Home Assistant's "
            "60-character threshold, so its pipeline streams it to TTS)"
        ),
    ]
    for name, s in lanes:
        if failures := s.get("failures"):
            notes.append(
                f"{name}: {len(failures)} turn(s) gave no figure, the first: "
                f"{failures[0]}"
            )
        think = 1000 * float(s["knobs"].get("think_time", 0))
        worst = max(
            median(v["satellite"]) for key, v in s["kinds"].items() if "/" not in key
        )
        notes.append(
            f"{name}: load average {_load(s['load_before'])} before, "
            f"{_load(s['load_after'])} after; our entity encodes the asked format: "
            f"{'yes' if s['entity_makes_format'] else 'no (Home Assistant runs ffmpeg)'}"
            f"; ESPHome streams the reply: "
            f"{'yes' if s['esphome_streams'] else 'no (joins the whole reply first)'}"
            f"; slowest satellite median - think time = {worst - think:.0f} ms"
        )
    return notes


def _load(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    """Run the voice benchmark (or combine lanes) and print its table."""
    args = _parse_args(argv)
    if args.table:
        lanes = []
        for path in args.table:
            samples = json.loads(path.read_text(encoding="utf-8"))
            lanes.append((_lane_name(path, samples), samples))
        sys.stdout.write(_table(lanes) + "\n")
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        samples = _run(args.turns, args.warmups)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: the benchmark's Home Assistant stopped\n")
        sys.exit(130)
    samples["lane"] = os.environ.get("ITANNIX_LANE", "")
    if args.samples_out:
        args.samples_out.write_text(json.dumps(samples), encoding="utf-8")
        return
    name = f"{samples['lane'] or 'this lane'} (HA {samples['ha_version']})"
    sys.stdout.write(_table([(name, samples)]) + "\n")


if __name__ == "__main__":
    main()
