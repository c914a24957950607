"""The load benchmark runs end to end (--quick) and prints its table with figures."""

from __future__ import annotations

import re

from .runner import run_quick_bench, table_rows

_NUMBER = re.compile(r"-?\d+(\.\d+)?|nan")
# --quick: 1 and 2 concurrent sessions, 20 turns, 5 sessions opened and closed.
METRICS = (
    *(
        f"N={n}: {name}"
        for n in (1, 2)
        for name in (
            "CPU per session (% of one core)",
            "mic frames sent (% of wall clock)",
            "mic silence dropped to catch up (% of wall)",
            "mic audio still queued at the end (ms)",
            "reply gaps > 100 ms (count)",
            "longest reply gap (ms)",
        )
    ),
    "backlog: audio queued at turn start (ms)",
    "backlog: mic lag behind satellite (ms)",
    "backlog: end of speech -> VAD event (ms)",
    "20 turns: traced growth (MiB)",
    "20 turns: RSS growth (MiB)",
    "5 sessions: traced growth (MiB)",
    "5 sessions: RSS growth (MiB)",
    "5 sessions: peers alive after gc",
    "5 sessions: tasks left over",
    "5 sessions: our objects alive",
)


def test_quick_load_bench_prints_the_table() -> None:
    """Every figure is there, beside its baseline, and what it says holds up."""
    out = run_quick_bench("benchmarks.load", timeout=150)
    rows = table_rows(out)
    assert rows.get("metric") == ["ours", "baseline", "ratio"], out
    for metric in METRICS:
        assert metric in rows, (metric, out)
        ours, baseline, _ratio = rows[metric]
        assert _NUMBER.fullmatch(ours), (metric, ours)
        assert _NUMBER.fullmatch(baseline), (metric, baseline)
    # Both sides sent microphone audio and used CPU: nothing silently idle.
    for n in (1, 2):
        ours, baseline, _ = rows[f"N={n}: mic frames sent (% of wall clock)"]
        assert float(ours) > 50, out
        assert float(baseline) > 50, out
        ours, baseline, _ = rows[f"N={n}: CPU per session (% of one core)"]
        assert float(ours) > 0, out
        assert float(baseline) > 0, out
    # The backlog really was there when the turn started, and both streams' ends of
    # speech were heard (the VAD waits 500 ms of silence: nothing comes sooner).
    queued, _, _ = rows["backlog: audio queued at turn start (ms)"]
    assert float(queued) >= 500, out
    late, on_time, _ = rows["backlog: end of speech -> VAD event (ms)"]
    assert float(late) >= 400, out
    assert float(on_time) >= 400, out
    assert re.search(r"load average \d+\.\d\d", out), out
    assert re.search(r"N=2: ours \d+ replies played", out), out
