"""The load benchmark runs end to end (--quick) and prints its table with figures."""

from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def _run_quick_load_bench() -> str:
    # Its own process group: on any failure the bench and its helper processes (the
    # emulator, the bare answerer) go down together.
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.load", "--quick"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return out


def _rows(out: str) -> dict[str, list[str]]:
    return {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.split("|")]) == 4
    }


def test_quick_load_bench_prints_the_table() -> None:
    """Every figure is there, beside its baseline, and what it says holds up."""
    out = _run_quick_load_bench()
    rows = _rows(out)
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
