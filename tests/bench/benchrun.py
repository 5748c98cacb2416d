"""Run a benchmark the way a person does (python -m bench.<name> from the repository root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *arguments: str, timeout: float = 300) -> tuple[str, list[dict[str, Any]]]:
    """The command's stdout and its JSON lines; fails the test with the command's stderr if it fails."""
    done = run_bench_failing(module, *arguments, timeout=timeout)
    assert done.returncode == 0, f"{module} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run_bench_failing(module: str, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The finished command, whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
