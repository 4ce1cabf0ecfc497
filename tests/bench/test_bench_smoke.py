"""The benchmark harness in smoke mode: every scenario completes and prints its row.

Timings are not asserted: CI machines are shared and noisy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "a baseline round trip",
    "b warm round trip (python)",
    "b warm round trip (node)",
    "c throughput",
    "d connect rate",
    "e idle memory",
    "f cold start (python)",
    "g reload to new reply",
    "h startup to first connection",
)


@pytest.mark.timeout(300)
def test_smoke_run_prints_every_row() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for row in ROWS:
        assert row in completed.stdout, f"row {row!r} missing from:\n{completed.stdout}"
    assert "Traceback" not in completed.stderr


@pytest.mark.timeout(120)
def test_cpu_breakdown_names_each_process_group() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cpu",
            "--route",
            "python",
            "--clients",
            "2",
            "--per-client",
            "3",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "route python: 6 replies" in completed.stdout
    for group in ("gateway", "worker bench-ws-default", "runtimes of bench-ws-default", "client"):
        assert f"  {group}" in completed.stdout, f"{group!r} missing from:\n{completed.stdout}"
    assert "Traceback" not in completed.stderr
