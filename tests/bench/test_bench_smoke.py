"""The benchmark runs end to end (--quick) and prints its table with figures."""

from __future__ import annotations

import re

from .runner import run_quick_bench, table_rows

METRICS = (
    "set-up, loopback, median (ms)",
    "set-up, loopback, p90 (ms)",
    "set-up, loopback, far end excluded (ms)",
    "set-up, network, median (ms)",
    "set-up, network, p90 (ms)",
    "set-up, network, far end excluded (ms)",
    "full-duplex audio CPU (% of one core)",
    "idle open session CPU (% of one core)",
)
# Held to a goal: each names it and says whether this run met it.
GOALS = {
    "set-up, loopback, median (ms)": "<= 1.20x",
    "set-up, loopback, far end excluded (ms)": "<= 1.20x",
    "set-up, network, median (ms)": "<= +40 ms",
    "set-up, network, far end excluded (ms)": "<= +40 ms",
    "full-duplex audio CPU (% of one core)": "<= 1.00x",
    "idle open session CPU (% of one core)": "<= 1 %",
}
NETWORK = "rtt=40ms,jitter=5ms,loss=1%"
VOICE_KINDS = (
    "ESPHome (WAV 16 kHz)",
    "Voice PE (FLAC 48 kHz)",
    "Wyoming (WAV 22.05 kHz)",
)
VOICE_METRICS = (
    "end of speech -> STT result, median",
    "service: end of speech -> first reply frame sent, median",
    *(
        f"{kind}: {metric}"
        for kind in VOICE_KINDS
        for metric in (
            "voice leaves our TTS, median",
            "voice at satellite, median",
            "voice at satellite, p90",
        )
    ),
)
_NUMBER = re.compile(r"\d+(\.\d+)?")


def test_quick_bench_prints_the_table() -> None:
    out = run_quick_bench("benchmarks.realtime", "--network", NETWORK)
    rows = table_rows(out, cells_after=5)
    assert rows.get("metric") == ["ours", "baseline", "ratio", "goal", "met"], out
    for metric in METRICS:
        assert metric in rows, out
        ours, baseline, ratio, goal, met = rows[metric]
        assert _NUMBER.fullmatch(ours), (metric, ours)
        assert _NUMBER.fullmatch(baseline), (metric, baseline)
        assert _NUMBER.fullmatch(ratio), (metric, ratio)
        assert goal == GOALS.get(metric, goal), (metric, goal)
        assert met in (("yes", "NO") if metric in GOALS else ("",)), (metric, met)
    # The profile really was applied: the bare peer's one HTTP request, and our two
    # (the sessions request, then the SDP), each cost at least a round trip.
    assert float(rows["set-up, network, median (ms)"][1]) >= 40
    assert float(rows["set-up, network, median (ms)"][0]) >= 2 * 40
    assert f"network: {NETWORK}" in out, out
    assert re.search(r"load average \(1, 5, 15 min\): [0-9. ]+ before", out), out
    assert re.search(r"wall window \d+(\.\d+)? s", out), out
    assert re.search(r"N = \d+ set-up runs", out), out


def test_quick_voice_bench_prints_the_table() -> None:
    """Spoken turns through Home Assistant and the bare library give latency figures."""
    # Seven spoken turns on 2026.11 (each satellite kind, also with Home Assistant
    # converting), four on 2025.12, each playing its reply out.
    out = run_quick_bench("benchmarks.voice", timeout=180)
    rows = table_rows(out)
    assert rows.get("") == ["ours", "bare", "ratio"], out
    for metric in VOICE_METRICS:
        assert metric in rows, out
        ours, baseline, ratio = rows[metric]
        assert _NUMBER.fullmatch(ours), (metric, ours)
        assert _NUMBER.fullmatch(baseline), (metric, baseline)
        assert _NUMBER.fullmatch(ratio), (metric, ratio)
        # Nothing reaches a listener before the service has sent it.
        assert float(ours) > 0, (metric, ours)
        assert float(baseline) > 0, (metric, baseline)
    assert re.search(r"N = 1 rounds per lane", out), out
    assert re.search(r"think_time=0\.5", out), out
    assert re.search(r"load average \d", out), out
