"""Run a benchmark module with --quick as a user would, and read its table."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_quick_bench(module: str, *args: str, timeout: float = 90) -> str:
    """``python -m MODULE --quick ARGS``; its output, once it exited cleanly."""
    # Its own process group: on any failure the bench and its helper processes (the
    # emulator, the bare answerer, the voice bench's Home Assistant) go down together.
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return out


def table_rows(out: str, cells_after: int = 3) -> dict[str, list[str]]:
    """Table rows by metric: the first ``cells_after`` cells after the name."""
    return {
        cells[0]: cells[1 : 1 + cells_after]
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.split("|")]) == 1 + cells_after
    }
