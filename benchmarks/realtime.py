"""Benchmark the realtime library against bare aiortc peers: ``scripts/bench``.

``python -m benchmarks.realtime [--runs N] [--seconds S] [--repeats R] [--quick]``

Prints one table from one run: every figure beside a baseline measured in the same run,
as medians and ratios (ours / baseline), because the machine is shared and noisy.
Everything stays on 127.0.0.1; the far ends (the emulator, the bare answerer) run in
processes of their own, so this process's CPU time is the client side only.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
import re
import secrets
import signal
import sys
import uuid

import aiohttp

from custom_components.itannix.realtime import Credentials, ItanniXClient
from tests.emulator.loopback import restrict_ice_to_loopback

from .measure import median, p90
from .processes import ServerProcess
from .scenarios import (
    DuplexSample,
    IdleSample,
    duplex_bare,
    duplex_ours,
    idle_ours,
    setup_bare,
    setup_ours,
)
from .sources import microphone_pcm

_WORKSPACE_KEY_RE = re.compile(r"Workspace key: (\S+)")


@dataclass(frozen=True, slots=True)
class Options:
    """How much to measure."""

    runs: int
    seconds: float
    repeats: int
    settle: float


@dataclass(slots=True)
class Results:
    """Every sample of one run."""

    mic_source: str = ""
    setup_ours: list[float] = field(default_factory=list)
    setup_bare: list[float] = field(default_factory=list)
    duplex_ours: list[DuplexSample] = field(default_factory=list)
    duplex_bare: list[DuplexSample] = field(default_factory=list)
    idle: list[IdleSample] = field(default_factory=list)


def _parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Set-up time and CPU cost of the realtime library vs bare aiortc.",
    )
    parser.add_argument("--runs", type=int, help="set-up runs per side (default 15)")
    parser.add_argument(
        "--seconds", type=float, help="wall window of each CPU sample (default 5)"
    )
    parser.add_argument("--repeats", type=int, help="CPU samples per side (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="small N, short windows (a smoke run)"
    )
    args = parser.parse_args(argv)
    runs, seconds, repeats, settle = (
        (3, 1.0, 1, 0.3) if args.quick else (15, 5.0, 3, 0.5)
    )
    options = Options(
        runs=args.runs or runs,
        seconds=args.seconds or seconds,
        repeats=args.repeats or repeats,
        settle=settle,
    )
    if options.runs < 1 or options.repeats < 1 or options.seconds <= 0:
        parser.error("--runs and --repeats must be >= 1, --seconds > 0")
    return options


async def _measure(options: Options) -> Results:
    restrict_ice_to_loopback()
    results = Results()
    mic_pcm, results.mic_source = await microphone_pcm()
    # The emulator makes up its workspace key and prints it: no key on a command line.
    emulator = ServerProcess(
        "the emulator", "tests.emulator", "--host", "127.0.0.1", "--port", "0"
    )
    answerer = ServerProcess("the bare answerer", "benchmarks.answerer")
    try:
        for outcome in await asyncio.gather(
            emulator.start(), answerer.start(), return_exceptions=True
        ):
            if isinstance(outcome, BaseException):
                raise outcome
        workspace_key = await emulator.read_value(_WORKSPACE_KEY_RE)
        async with aiohttp.ClientSession() as http:
            client = ItanniXClient(
                http,
                emulator.url,
                Credentials(str(uuid.uuid4()), secrets.token_hex(24), workspace_key),
            )
            # Warm-up (not counted): enrollment, imports, first codec contexts.
            await setup_ours(client)
            await setup_bare()
            # Interleaved, so the machine's drifts hit both sides alike.
            for _ in range(options.runs):
                results.setup_ours.append(await setup_ours(client))
                results.setup_bare.append(await setup_bare())
            for _ in range(options.repeats):
                results.duplex_ours.append(
                    await duplex_ours(client, mic_pcm, options.settle, options.seconds)
                )
                results.duplex_bare.append(
                    await duplex_bare(
                        http, answerer.url, options.settle, options.seconds
                    )
                )
            for i in range(options.repeats):
                results.idle.append(
                    await idle_ours(
                        client,
                        options.settle,
                        options.seconds,
                        attached_first=bool(i % 2),
                    )
                )
    finally:
        await asyncio.gather(emulator.stop(), answerer.stop())
    return results


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}" if base > 0 else "n/a"


def _table(options: Options, r: Results) -> str:
    rows = [
        ("session set-up, median (ms)", median(r.setup_ours), median(r.setup_bare)),
        ("session set-up, p90 (ms)", p90(r.setup_ours), p90(r.setup_bare)),
        (
            "full-duplex audio CPU (% of one core)",
            median([s.cpu for s in r.duplex_ours]),
            median([s.cpu for s in r.duplex_bare]),
        ),
        (
            "idle open session CPU (% of one core)",
            median([s.detached for s in r.idle]),
            median([s.attached for s in r.idle]),
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        "ItanniX realtime library vs bare aiortc: one run, medians, ratio = ours / baseline",
        "",
        f"{'metric':<{width}} | {'ours':>9} | {'baseline':>9} | {'ratio':>5}",
        f"{'-' * width}-+-{'-' * 9}-+-{'-' * 9}-+-{'-' * 5}",
    ]
    lines += [
        f"{name:<{width}} | {ours:>9.1f} | {base:>9.1f} | {_ratio(ours, base):>5}"
        for name, ours, base in rows
    ]
    ours_d, bare_d = r.duplex_ours, r.duplex_bare
    playing = sum(s.reply_playing for s in ours_d)
    fed = sum(s.fed_frames for s in ours_d) / max(1, sum(s.sent_frames for s in ours_d))
    sent = _avg(s.sent_frames for s in ours_d)
    reply = _avg(s.received for s in ours_d)
    lines += [
        "",
        (
            f"N = {options.runs} set-up runs per side (after one warm-up each); CPU: "
            f"{options.repeats} samples per side, wall window {options.seconds:g} s "
            f"each (after {options.settle:g} s of settling)"
        ),
        (
            "set-up   ours: RealtimeConnection.connect() to the emulator (session "
            "request, SDP, data channel open)"
        ),
        "         baseline: two bare aiortc peers in this process, data channel open",
        (
            f"duplex   ours: RealtimeSession mid-turn, microphone fed {r.mic_source} "
            "at real time, the reply's voice drained at 16 kHz"
        ),
        "         baseline: a bare aiortc peer sending a 440 Hz tone, remote tone drained",
        "         far ends (emulator, bare answerer) in their own processes: not counted",
        (
            f"         per window: ours {sent} frames out ({fed:.0%} fed audio), "
            f"{reply} reply chunks in, reply still playing at the end in "
            f"{playing}/{len(ours_d)}; baseline {_avg(s.sent_frames for s in bare_d)} "
            f"out, {_avg(s.received for s in bare_d)} in"
        ),
        "idle     ours: open session, microphone detached (the default between turns)",
        (
            "         baseline: the same session, microphone attached sending silence "
            f"({_avg(s.attached_frames for s in r.idle)} frames per window; detached "
            f"{_avg(s.detached_frames for s in r.idle)})"
        ),
        "         the emulator sends silence frames between replies: both decode them",
    ]
    return "\n".join(lines)


def _avg(values: Iterable[int]) -> str:
    items = list(values)
    return f"{sum(items) / max(1, len(items)):.0f}"


async def _main(options: Options) -> Results:
    # SIGTERM cancels the run like Ctrl-C does, so every helper process is stopped.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await _measure(options)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    options = _parse_args(argv)
    try:
        results = asyncio.run(_main(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("interrupted: helper processes stopped\n")
        sys.exit(130)
    sys.stdout.write(_table(options, results) + "\n")


if __name__ == "__main__":
    main()
