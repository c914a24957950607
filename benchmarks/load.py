"""Load, microphone backlog and memory of the realtime library: ``scripts/bench load``.

``python -m benchmarks.load [--sessions 1,5,10] [--seconds S] [--turns N]
[--open-close N] [--backlog S] [--quick]``

Prints one table from one run, every figure beside a baseline measured in the same run:

1. N concurrent voice sessions (``load_sessions.py``): ours against the emulator vs N
   bare aiortc peers against the bare answerer; CPU per session, microphone frames
   sent against the wall clock, gaps over 100 ms in the reply's audio.
2. Microphone backlog (``load_backlog.py``): a satellite streaming from before the
   session opened vs from the turn's start; the lag after a few seconds and how late
   each end of speech reaches the service's VAD.
3. Memory (``load_memory.py``): typed turns on one session vs the same session idle;
   sessions opened and closed vs bare peers; what is left alive.

The far ends run in processes of their own; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
import os
import re
import secrets
import statistics
import tracemalloc
import uuid

import aiohttp

from custom_components.itannix.realtime import Credentials, ItanniXClient
from tests.emulator.loopback import restrict_ice_to_loopback

from .cli import run_and_print
from .load_backlog import BacklogSample, Utterances, backlog_sample
from .load_memory import (
    Growth,
    Retained,
    idle_ours,
    sessions_bare,
    sessions_ours,
    turns_ours,
)
from .load_sessions import LoadSample, frames_48k, load_bare, load_ours, merge
from .processes import ServerProcess
from .sources import microphone_pcm

_WORKSPACE_KEY_RE = re.compile(r"Workspace key: (\S+)")
_GOAL_SESSIONS = 10
_GOAL_CPU_RATIO = 1.1
_GOAL_GROWTH_MIB = 1.0


@dataclass(frozen=True, slots=True)
class Options:
    """How much to measure."""

    sessions: tuple[int, ...]
    seconds: float
    repeats: int
    settle: float
    turns: int
    open_close: int
    backlog: float
    lag_at: float
    stream_seconds: float
    speech: float
    pause: float


@dataclass(slots=True)
class Results:
    """Every sample of one run."""

    mic_source: str = ""
    load: dict[int, tuple[LoadSample, LoadSample]] = field(default_factory=dict)
    backlog: tuple[BacklogSample, BacklogSample] | None = None
    turns: tuple[Growth, Growth] | None = None
    sessions: tuple[Retained, Retained] | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _sessions(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of counts") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("counts must be >= 1")
    return values


def _parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/bench load",
        description="Concurrent sessions, microphone backlog and memory vs bare aiortc.",
    )
    parser.add_argument(
        "--sessions", type=_sessions, help="concurrent sessions (default 1,5,10)"
    )
    parser.add_argument(
        "--seconds", type=float, help="wall window per load sample (default 8)"
    )
    parser.add_argument(
        "--repeats", type=int, help="load windows per side and N (default 2)"
    )
    parser.add_argument("--turns", type=int, help="typed turns on one session (300)")
    parser.add_argument(
        "--open-close", type=int, help="sessions opened and closed (default 50)"
    )
    parser.add_argument(
        "--backlog",
        type=float,
        help="seconds the satellite streams before the session opens (default 1)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small N, few turns (a smoke run)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    options = Options(
        sessions=args.sessions or ((1, 2) if quick else (1, 5, 10)),
        seconds=args.seconds or (3.0 if quick else 8.0),
        repeats=args.repeats or (1 if quick else 2),
        settle=0.5 if quick else 1.0,
        turns=args.turns or (20 if quick else 300),
        open_close=args.open_close or (5 if quick else 50),
        backlog=1.0 if args.backlog is None else args.backlog,
        lag_at=2.5 if quick else 5.0,
        stream_seconds=7.0 if quick else 15.0,
        speech=1.5 if quick else 2.5,
        pause=1.5 if quick else 2.5,
    )
    if (
        options.seconds <= 0
        or min(options.turns, options.open_close, options.repeats) < 1
    ):
        parser.error("--seconds must be > 0, --turns, --open-close, --repeats >= 1")
    if options.backlog < 0:
        parser.error("--backlog must be >= 0")
    return options


async def _start(emulator: ServerProcess, answerer: ServerProcess) -> None:
    for outcome in await asyncio.gather(
        emulator.start(), answerer.start(), return_exceptions=True
    ):
        if isinstance(outcome, BaseException):
            raise outcome


async def _measure(options: Options) -> Results:
    restrict_ice_to_loopback()
    results = Results(load_before=os.getloadavg())
    speech, results.mic_source = await microphone_pcm()
    utterances = Utterances.make(speech, options.speech, options.pause)
    emulator = ServerProcess(
        "the emulator", "tests.emulator", "--host", "127.0.0.1", "--port", "0"
    )
    answerer = ServerProcess("the bare answerer", "benchmarks.answerer")
    try:
        await _start(emulator, answerer)
        workspace_key = await emulator.read_value(_WORKSPACE_KEY_RE)
        async with aiohttp.ClientSession() as http:
            client = ItanniXClient(
                http,
                emulator.url,
                Credentials(str(uuid.uuid4()), secrets.token_hex(24), workspace_key),
            )
            await _load(options, client, http, answerer.url, utterances.pcm, results)
            results.backlog = (
                await backlog_sample(
                    client,
                    utterances,
                    wait=options.backlog,
                    lag_at=options.lag_at,
                    seconds=options.stream_seconds,
                ),
                await backlog_sample(
                    client,
                    utterances,
                    wait=0.0,
                    lag_at=options.lag_at,
                    seconds=options.stream_seconds,
                ),
            )
            await _memory(options, client, http, answerer.url, results)
    finally:
        await asyncio.gather(emulator.stop(), answerer.stop())
    results.load_after = os.getloadavg()
    return results


async def _load(
    options: Options,
    client: ItanniXClient,
    http: aiohttp.ClientSession,
    answerer_url: str,
    pcm: bytes,
    results: Results,
) -> None:
    frames = frames_48k(pcm)
    # Warm-up (not counted): enrollment, imports, first codec contexts.
    await load_ours(client, pcm, 1, 0.1, 0.2)
    await load_bare(http, answerer_url, frames, 1, 0.1, 0.2)
    for i, count in enumerate(options.sessions):
        samples: dict[bool, list[LoadSample]] = {True: [], False: []}
        for repeat in range(options.repeats):
            # Alternate which side goes first, so drifts hit both alike.
            first = (i + repeat) % 2 == 0
            for ours in (first, not first):
                samples[ours].append(
                    await (
                        load_ours(client, pcm, count, options.settle, options.seconds)
                        if ours
                        else load_bare(
                            http,
                            answerer_url,
                            frames,
                            count,
                            options.settle,
                            options.seconds,
                        )
                    )
                )
        results.load[count] = (merge(samples[True]), merge(samples[False]))


async def _memory(
    options: Options,
    client: ItanniXClient,
    http: aiohttp.ClientSession,
    answerer_url: str,
    results: Results,
) -> None:
    # Warm-up of what the sessions phase uses before counting anything.
    await sessions_ours(client, 1)
    await sessions_bare(http, answerer_url, 1)
    tracemalloc.start()
    try:
        turns = await turns_ours(client, options.turns, warmup=10)
        idle = await idle_ours(client, turns.seconds)
        results.turns = (turns, idle)
        results.sessions = (
            await sessions_ours(client, options.open_close),
            await sessions_bare(http, answerer_url, options.open_close),
        )
    finally:
        tracemalloc.stop()


# -- the table ----------------------------------------------------------------------


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}" if base > 0 else "n/a"


type _Row = tuple[str, float, float, str]


def _load_rows(r: Results) -> list[_Row]:
    rows: list[_Row] = []
    for count, (ours, bare) in sorted(r.load.items()):
        rows += [
            (
                f"N={count}: CPU per session (% of one core)",
                ours.cpu_per_session,
                bare.cpu_per_session,
                ".1f",
            ),
            (
                f"N={count}: mic frames sent (% of wall clock)",
                ours.mic_percent,
                bare.mic_percent,
                ".1f",
            ),
            (
                f"N={count}: mic silence dropped to catch up (% of wall)",
                100 * ours.skipped / ours.expected_frames,
                100 * bare.skipped / bare.expected_frames,
                ".1f",
            ),
            (
                f"N={count}: mic audio still queued at the end (ms)",
                1000 * ours.lag,
                1000 * bare.lag,
                ".0f",
            ),
            (f"N={count}: reply gaps > 100 ms (count)", ours.gaps, bare.gaps, ".0f"),
            (
                f"N={count}: longest reply gap (ms)",
                1000 * ours.max_gap,
                1000 * bare.max_gap,
                ".0f",
            ),
        ]
    return rows


def _backlog_rows(r: Results) -> list[_Row]:
    if r.backlog is None:
        return []
    late, on_time = r.backlog
    return [
        ("backlog: audio queued at turn start (ms)", 1000 * late.backlog, 0.0, ".0f"),
        (
            "backlog: mic lag behind satellite (ms)",
            1000 * late.lag,
            1000 * on_time.lag,
            ".0f",
        ),
        (
            "backlog: end of speech -> VAD event (ms)",
            1000 * _median(late.late),
            1000 * _median(on_time.late),
            ".0f",
        ),
    ]


def _memory_rows(options: Options, r: Results) -> list[_Row]:
    rows: list[_Row] = []
    if r.turns is not None:
        turns, idle = r.turns
        n = options.turns
        rows += [
            (f"{n} turns: traced growth (MiB)", turns.traced, idle.traced, ".2f"),
            (f"{n} turns: RSS growth (MiB)", turns.rss, idle.rss, ".2f"),
        ]
    if r.sessions is not None:
        ours, bare = r.sessions
        n = options.open_close
        rows += [
            (
                f"{n} sessions: traced growth (MiB)",
                ours.growth.traced,
                bare.growth.traced,
                ".2f",
            ),
            (
                f"{n} sessions: RSS growth (MiB)",
                ours.growth.rss,
                bare.growth.rss,
                ".2f",
            ),
            (
                f"{n} sessions: peers alive after gc",
                ours.peers_alive,
                bare.peers_alive,
                ".0f",
            ),
            (
                f"{n} sessions: tasks left over",
                ours.tasks_after - ours.tasks_before,
                bare.tasks_after - bare.tasks_before,
                ".0f",
            ),
            (f"{n} sessions: our objects alive", ours.ours_alive, 0, ".0f"),
        ]
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _table(options: Options, r: Results) -> str:
    rows = _load_rows(r) + _backlog_rows(r) + _memory_rows(options, r)
    width = max(len(row[0]) for row in rows)
    lines = [
        (
            "ItanniX realtime library under load vs bare aiortc: one run, ratio = "
            "ours / baseline"
        ),
        "",
        f"{'metric':<{width}} | {'ours':>9} | {'baseline':>9} | {'ratio':>5}",
        f"{'-' * width}-+-{'-' * 9}-+-{'-' * 9}-+-{'-' * 5}",
    ]
    lines += [
        f"{name:<{width}} | {ours:>9{fmt}} | {base:>9{fmt}} | {_ratio(ours, base):>5}"
        for name, ours, base, fmt in rows
    ]
    return "\n".join([*lines, "", *_notes(options, r)])


def _notes(options: Options, r: Results) -> list[str]:
    before, after = r.load_before, r.load_after
    notes = [
        (
            f"machine: {os.cpu_count()} CPUs, load average {before[0]:.2f} "
            f"{before[1]:.2f} {before[2]:.2f} at the start, {after[0]:.2f} "
            f"{after[1]:.2f} {after[2]:.2f} at the end"
        ),
        (
            f"load     ours: N RealtimeSession to the emulator, each microphone fed "
            f"{r.mic_source} ({options.speech:g} s, then {options.pause:g} s of "
            "silence, looped) at real time; the emulator's VAD answers each utterance "
            "in its voice"
        ),
        (
            "         baseline: N bare aiortc peers sending the same audio (48 kHz "
            "frames made once) to the bare answerer, which sends a tone back"
        ),
        (
            f"         per N and side: {options.repeats} window(s) of "
            f"{options.seconds:g} s (sides interleaved) after {options.settle:g} s of "
            "settling each; CPU: this process's (client side only) / wall / N, "
            "median of the windows; mic frames, gaps: all windows; reply gaps: inter-arrival of the reply's audio at the "
            "client while it plays (ours: output_audio_buffer.started to stopped; "
            "baseline: the tone, all along); silence dropped: fed silence the "
            "microphone skipped when it fell behind (a loop stall) and caught up; "
            "queued: fed audio not sent yet, the longest of the N (a bare peer's "
            "track queues nothing)"
        ),
    ]
    for count, (ours, bare) in sorted(r.load.items()):
        notes.append(
            f"         N={count}: ours {ours.replies} replies played, opened in "
            f"{ours.setup:.2f} s; baseline opened in {bare.setup:.2f} s"
        )
    if r.backlog is not None:
        late, on_time = r.backlog
        notes += [
            (
                f"backlog  ours: the satellite streams {options.backlog:g} s before "
                "the session opens (plus the loopback set-up); baseline: it starts "
                "with the turn"
            ),
            (
                f"         lag: fed audio not yet sent, {options.lag_at:g} s into the "
                "turn; VAD event: input_audio_buffer.speech_stopped at the client "
                f"after the real end of speech (includes the VAD's 500 ms of "
                f"silence), ends from {options.lag_at:g} s on: "
                f"{len(late.late)} and {len(on_time.late)}; silent frames dropped "
                f"to catch up: {late.skipped}"
            ),
        ]
    if r.turns is not None:
        notes.append(
            f"memory   turns: {options.turns} typed turns on one session (after 10 "
            f"more; {r.turns[0].seconds:.1f} s); baseline: the same session idle as "
            "long; sessions: opened one after another, a typed turn each, closed; "
            "baseline: bare peers to the bare answerer"
        )
    return notes + _goals(r)


def _goals(r: Results) -> list[str]:
    lines = []
    if (pair := r.load.get(_GOAL_SESSIONS)) is not None:
        ours, bare = pair
        cpu = ours.cpu_per_session / bare.cpu_per_session if bare.cpu_per_session else 0
        met = ours.mic_percent >= 99.5 and ours.gaps == 0 and cpu <= _GOAL_CPU_RATIO
        lines.append(
            f"goal     {_GOAL_SESSIONS} sessions: mic {ours.mic_percent:.1f} % "
            f"sent, {ours.gaps} reply gaps > 100 ms, CPU {cpu:.2f}x bare "
            f"(goal 100 %, 0, <= {_GOAL_CPU_RATIO}x): {'met' if met else 'NOT met'}"
        )
    if r.turns is not None and r.sessions is not None:
        turns, sessions = r.turns[0], r.sessions[0]
        met = (
            turns.traced <= _GOAL_GROWTH_MIB
            and sessions.peers_alive == 0
            and sessions.ours_alive == 0
            and sessions.tasks_after <= sessions.tasks_before
        )
        lines.append(
            f"goal     memory: <= {_GOAL_GROWTH_MIB:g} MiB traced growth over the "
            f"turns, nothing alive after the sessions: {'met' if met else 'NOT met'}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    run_and_print(_measure, _table, _parse_args(argv))


if __name__ == "__main__":
    main()
