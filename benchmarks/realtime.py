"""Benchmark the realtime library against bare aiortc peers: ``scripts/bench``.

``python -m benchmarks.realtime [--runs N] [--seconds S] [--repeats R]
[--network PROFILE] [--quick]``

Prints one table from one run: every figure beside a baseline measured in the same run,
as medians and ratios (ours / baseline), and the goal it is held to, because the
machine is shared and noisy. Everything stays on 127.0.0.1; the far ends (the emulator,
the bare answerer) run in processes of their own, so this process's CPU time is the
client side only. Set-up is measured twice: on straight loopback, and through a
network profile (``tests/network.py``: media relayed with delay, jitter and loss, each
HTTP answer one round trip late) that both far ends apply alike.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
import os
import re
import secrets
import uuid

import aiohttp

from custom_components.itannix.realtime import Credentials, ItanniXClient
from tests.emulator.loopback import restrict_ice_to_loopback
from tests.network import NetworkProfile

from .cli import run_and_print
from .measure import FarEndClock, median, p90
from .processes import ServerProcess
from .scenarios import (
    DuplexSample,
    IdleSample,
    SetupSample,
    duplex_bare,
    duplex_ours,
    idle_ours,
    setup_bare,
    setup_ours,
)
from .sources import microphone_pcm

_WORKSPACE_KEY_RE = re.compile(r"Workspace key: (\S+)")
DEFAULT_NETWORK = "rtt=80ms,jitter=10ms,loss=1%"
# The goals (issue 12): ours / baseline, or an absolute figure.
SETUP_RATIO_GOAL = 1.2
DUPLEX_RATIO_GOAL = 1.0
IDLE_CPU_GOAL = 1.0  # % of one core


@dataclass(frozen=True, slots=True)
class Options:
    """How much to measure."""

    runs: int
    seconds: float
    repeats: int
    settle: float
    network: NetworkProfile


@dataclass(slots=True)
class Results:
    """Every sample of one run."""

    mic_source: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    setup_ours: list[SetupSample] = field(default_factory=list)
    setup_bare: list[SetupSample] = field(default_factory=list)
    net_ours: list[SetupSample] = field(default_factory=list)
    net_bare: list[SetupSample] = field(default_factory=list)
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
        "--network",
        type=NetworkProfile.parse,
        default=NetworkProfile.parse(DEFAULT_NETWORK),
        metavar="PROFILE",
        help=f"the network of the second set-up figure (default {DEFAULT_NETWORK})".replace(
            "%", "%%"
        ),
    )
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
        network=args.network,
    )
    if options.runs < 1 or options.repeats < 1 or options.seconds <= 0:
        parser.error("--runs and --repeats must be >= 1, --seconds > 0")
    return options


class _FarEnds:
    """The emulator and the bare answerer, on loopback and behind the network."""

    def __init__(self, network: NetworkProfile) -> None:
        # The emulator makes up its workspace key and prints it: no key on a command
        # line.
        emulator = ("tests.emulator", "--host", "127.0.0.1", "--port", "0")
        profile = ("--network", str(network))
        self.emulator = ServerProcess("the emulator", *emulator)
        self.answerer = ServerProcess("the bare answerer", "benchmarks.answerer")
        self.net_emulator = ServerProcess("the emulator (network)", *emulator, *profile)
        self.net_answerer = ServerProcess(
            "the bare answerer (network)", "benchmarks.answerer", *profile
        )
        self.all = (self.emulator, self.answerer, self.net_emulator, self.net_answerer)

    async def start(self) -> tuple[str, str]:
        """Start all four; return the two emulators' workspace keys."""
        outcomes = await asyncio.gather(
            *(p.start() for p in self.all), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return (
            await self.emulator.read_value(_WORKSPACE_KEY_RE),
            await self.net_emulator.read_value(_WORKSPACE_KEY_RE),
        )

    async def stop(self) -> None:
        """Stop all four (each on every path)."""
        await asyncio.gather(*(p.stop() for p in self.all))


def _client(http: aiohttp.ClientSession, url: str, key: str) -> ItanniXClient:
    credentials = Credentials(str(uuid.uuid4()), secrets.token_hex(24), key)
    return ItanniXClient(http, url, credentials)


async def _measure_setup(
    options: Options,
    results: Results,
    http: aiohttp.ClientSession,
    clock: FarEndClock,
    far: _FarEnds,
    keys: tuple[str, str],
) -> ItanniXClient:
    client = _client(http, far.emulator.url, keys[0])
    net_client = _client(http, far.net_emulator.url, keys[1])
    # Warm-up (not counted): enrollment, imports, first codec contexts, connections.
    for _ in range(2):
        await setup_ours(client, clock)
        await setup_bare(http, far.answerer.url, clock)
        await setup_ours(net_client, clock)
        await setup_bare(http, far.net_answerer.url, clock)
    # Interleaved, so the machine's drifts hit every side alike.
    for _ in range(options.runs):
        results.setup_ours.append(await setup_ours(client, clock))
        results.setup_bare.append(await setup_bare(http, far.answerer.url, clock))
        results.net_ours.append(await setup_ours(net_client, clock))
        results.net_bare.append(await setup_bare(http, far.net_answerer.url, clock))
    return client


async def _measure(options: Options) -> Results:
    restrict_ice_to_loopback()
    results = Results(load_before=os.getloadavg())
    mic_pcm, results.mic_source = await microphone_pcm()
    far = _FarEnds(options.network)
    clock = FarEndClock()
    try:
        keys = await far.start()
        async with aiohttp.ClientSession(trace_configs=[clock.trace_config]) as http:
            client = await _measure_setup(options, results, http, clock, far, keys)
            for _ in range(options.repeats):
                results.duplex_ours.append(
                    await duplex_ours(client, mic_pcm, options.settle, options.seconds)
                )
                results.duplex_bare.append(
                    await duplex_bare(
                        http, far.answerer.url, options.settle, options.seconds
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
        await far.stop()
    results.load_after = os.getloadavg()
    return results


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}" if base > 0 else "n/a"


type _Row = tuple[str, float, float, str, bool | None]


def _ratio_row(name: str, ours: float, base: float, goal: float | None) -> _Row:
    if goal is None:
        return (name, ours, base, "", None)
    return (name, ours, base, f"<= {goal:.2f}x", base > 0 and ours / base <= goal)


def _setup_rows(r: Results, rtt_ms: float) -> list[_Row]:
    def ms(samples: list[SetupSample]) -> list[float]:
        return [s.ms for s in samples]

    def near(samples: list[SetupSample]) -> list[float]:
        return [s.near_ms for s in samples]

    net_ours, net_bare = median(ms(r.net_ours)), median(ms(r.net_bare))
    net_near_ours, net_near_bare = median(near(r.net_ours)), median(near(r.net_bare))
    plus_rtt = f"<= +{rtt_ms:g} ms"
    return [
        _ratio_row(
            "set-up, loopback, median (ms)",
            median(ms(r.setup_ours)),
            median(ms(r.setup_bare)),
            SETUP_RATIO_GOAL,
        ),
        _ratio_row(
            "set-up, loopback, p90 (ms)",
            p90(ms(r.setup_ours)),
            p90(ms(r.setup_bare)),
            None,
        ),
        _ratio_row(
            "set-up, loopback, far end excluded (ms)",
            median(near(r.setup_ours)),
            median(near(r.setup_bare)),
            SETUP_RATIO_GOAL,
        ),
        (
            "set-up, network, median (ms)",
            net_ours,
            net_bare,
            plus_rtt,
            net_ours - net_bare <= rtt_ms,
        ),
        (
            "set-up, network, p90 (ms)",
            p90(ms(r.net_ours)),
            p90(ms(r.net_bare)),
            "",
            None,
        ),
        (
            "set-up, network, far end excluded (ms)",
            net_near_ours,
            net_near_bare,
            plus_rtt,
            net_near_ours - net_near_bare <= rtt_ms,
        ),
    ]


def _rows(options: Options, r: Results) -> list[_Row]:
    idle = median([s.detached for s in r.idle])
    return [
        *_setup_rows(r, options.network.rtt * 1000),
        _ratio_row(
            "full-duplex audio CPU (% of one core)",
            median([s.cpu for s in r.duplex_ours]),
            median([s.cpu for s in r.duplex_bare]),
            DUPLEX_RATIO_GOAL,
        ),
        (
            "idle open session CPU (% of one core)",
            idle,
            median([s.attached for s in r.idle]),
            f"<= {IDLE_CPU_GOAL:g} %",
            idle <= IDLE_CPU_GOAL,
        ),
    ]


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _table(options: Options, r: Results) -> str:
    rows = _rows(options, r)
    width = max(len(row[0]) for row in rows)
    lines = [
        "ItanniX realtime library vs bare aiortc: one run, medians, ratio = ours / baseline",
        (
            f"load average (1, 5, 15 min): {_load(r.load_before)} before, "
            f"{_load(r.load_after)} after"
        ),
        "",
        (
            f"{'metric':<{width}} | {'ours':>9} | {'baseline':>9} | {'ratio':>5} | "
            f"{'goal':<13} | met"
        ),
        f"{'-' * width}-+-{'-' * 9}-+-{'-' * 9}-+-{'-' * 5}-+-{'-' * 13}-+-----",
    ]
    lines += [
        f"{name:<{width}} | {ours:>9.1f} | {base:>9.1f} | {_ratio(ours, base):>5} | "
        f"{goal:<13} | {'' if met is None else ('yes' if met else 'NO')}"
        for name, ours, base, goal, met in rows
    ]
    return "\n".join(lines + _notes(options, r))


def _notes(options: Options, r: Results) -> list[str]:
    ours_d, bare_d = r.duplex_ours, r.duplex_bare
    playing = sum(s.reply_playing for s in ours_d)
    fed = sum(s.fed_frames for s in ours_d) / max(1, sum(s.sent_frames for s in ours_d))
    sent = _avg(s.sent_frames for s in ours_d)
    reply = _avg(s.received for s in ours_d)

    def far(samples: list[SetupSample]) -> str:
        return f"{median([s.far_end_ms for s in samples]):.1f}"

    return [
        "",
        (
            f"N = {options.runs} set-up runs per side and network (after two warm-ups "
            f"each); CPU: {options.repeats} samples per side, wall window "
            f"{options.seconds:g} s each (after {options.settle:g} s of settling)"
        ),
        (
            "set-up   ours: RealtimeConnection.connect() to the emulator: the sessions "
            "request, the SDP request, ICE, DTLS, SCTP, the data channel open"
        ),
        (
            "         baseline: a bare aiortc peer, its SDP in one HTTP POST to a bare "
            "aiortc answerer (no sessions request, no authentication), channel open"
        ),
        f"         network: {options.network} (tests/network.py), both far ends alike:",
        (
            "         media through a UdpRelay, each HTTP answer one round trip late; "
            "goal: ours <= baseline + one round trip"
        ),
        (
            "         (ours pays the protocol's sessions request before the SDP: one "
            "more round trip, jitter included, and the service's handling of it)"
        ),
        (
            "         far end excluded: minus the far end's own handling of the HTTP "
            "requests (its Server-Timing), median ours "
            f"{far(r.setup_ours)} ms, baseline {far(r.setup_bare)} ms on loopback"
        ),
        (
            f"duplex   ours: RealtimeSession mid-turn, microphone fed {r.mic_source} "
            "at real time, below the VAD (room sound: no barge-in), the reply's "
            "voice drained at 16 kHz"
        ),
        "         baseline: a bare aiortc peer sending a 440 Hz tone, remote tone drained",
        "         far ends (emulator, bare answerer) in their own processes: not counted",
        (
            f"         per window: ours {sent} frames out ({fed:.0%} fed audio), "
            f"{reply} reply chunks in, reply still playing at the end in "
            f"{playing}/{len(ours_d)}; baseline {_avg(s.sent_frames for s in bare_d)} "
            f"out, {_avg(s.received for s in bare_d)} in"
        ),
        (
            "idle     ours: open session between turns: microphone detached, the "
            "service's silence counted, not decoded"
        ),
        (
            "         baseline: the same session, microphone attached sending silence "
            f"({_avg(s.attached_frames for s in r.idle)} frames per window; detached "
            f"{_avg(s.detached_frames for s in r.idle)})"
        ),
        "         the emulator sends 50 silence packets a second between replies",
    ]


def _avg(values: Iterable[int]) -> str:
    items = list(values)
    return f"{sum(items) / max(1, len(items)):.0f}"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    run_and_print(_measure, _table, _parse_args(argv))


if __name__ == "__main__":
    main()
