"""The benchmark runs end to end (--quick) and prints its table with figures."""

from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys

REPO_ROOT = Path(__file__).resolve().parents[2]
METRICS = (
    "session set-up, median (ms)",
    "session set-up, p90 (ms)",
    "full-duplex audio CPU (% of one core)",
    "idle open session CPU (% of one core)",
)
_NUMBER = re.compile(r"\d+(\.\d+)?")


def _run_quick_bench() -> str:
    # Its own process group: on any failure the bench and its helper processes (the
    # emulator, the bare answerer) go down together.
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.realtime", "--quick"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return out


def test_quick_bench_prints_the_table() -> None:
    out = _run_quick_bench()
    rows = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.split("|")]) == 4
    }
    assert rows.get("metric") == ["ours", "baseline", "ratio"], out
    for metric in METRICS:
        assert metric in rows, out
        ours, baseline, ratio = rows[metric]
        assert _NUMBER.fullmatch(ours), (metric, ours)
        assert _NUMBER.fullmatch(baseline), (metric, baseline)
        assert _NUMBER.fullmatch(ratio), (metric, ratio)
    assert re.search(r"wall window \d+(\.\d+)? s", out), out
    assert re.search(r"N = \d+ set-up runs", out), out
