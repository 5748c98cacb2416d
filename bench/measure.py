"""What every benchmark reports beside its figures: where and when it ran, CPU spent, latency percentiles."""

from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A 1-minute load average at or under this share of the CPUs counts as a quiet machine.
QUIET_LOAD_PER_CPU = 0.25


def percentile_ms(ordered_seconds: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted latencies, in milliseconds (None without samples)."""
    if not ordered_seconds:
        return None
    return round(ordered_seconds[min(len(ordered_seconds) - 1, int(fraction * len(ordered_seconds)))] * 1000, 2)


def latency_figures(latencies: list[float]) -> dict[str, float | None]:
    ordered = sorted(latencies)
    return {
        "p50_ms": percentile_ms(ordered, 0.50),
        "p90_ms": percentile_ms(ordered, 0.90),
        "p99_ms": percentile_ms(ordered, 0.99),
        "max_ms": percentile_ms(ordered, 1.0),
    }


def show(value: object) -> str:
    """A table cell: n/a for a missing figure, a list by its length (e.g. quorum members)."""
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return str(len(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def text_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """Right-aligned columns under a header and a rule, for a terminal."""
    widths = [max(len(line[i]) for line in [columns, *rows]) for i in range(len(columns))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in [columns, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def run_context() -> dict[str, Any]:
    """Date, machine, CPU count and whether the machine was quiet, taken just before a run."""
    cpus = os.cpu_count() or 1
    load1, load5, _ = os.getloadavg()
    model = next(
        (line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu_model": model,
        "cpus": cpus,
        "load_average_1m": round(load1, 2),
        "load_average_5m": round(load5, 2),
        "quiet": load1 <= QUIET_LOAD_PER_CPU * cpus,
        "python": sys.version.split()[0],
    }


def context_lines(context: dict[str, Any]) -> list[str]:
    quiet = "yes" if context["quiet"] else "NO (figures are noisy; re-run on a quiet machine)"
    return [
        f"date {context['date']} · {context['machine']} · {context['cpu_model']} · {context['cpus']} CPUs",
        f"load average before the run: {context['load_average_1m']} (1 min), {context['load_average_5m']} (5 min);"
        f" quiet (1-min load <= {QUIET_LOAD_PER_CPU:g} x CPUs): {quiet}",
    ]


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all processes, the broker included), from /proc/stat."""
    fields = [int(value) for value in _read_lines("/proc/stat")[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / CLOCK_TICKS


def process_group_cpu_seconds(group: int) -> float:
    """CPU seconds of the live processes in one process group (a private broker runs in its own group)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses: the fields we need follow the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of the child processes that have ended and been waited for, with their own children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSample:
    machine: float
    processes: float
    broker: float | None

    @classmethod
    def take(cls, broker_group: int | None) -> CpuSample:
        broker = process_group_cpu_seconds(broker_group) if broker_group is not None else None
        return cls(machine_busy_seconds(), children_cpu_seconds(), broker)

    def __sub__(self, earlier: CpuSample) -> CpuSample:
        broker = None if self.broker is None or earlier.broker is None else self.broker - earlier.broker
        return CpuSample(self.machine - earlier.machine, self.processes - earlier.processes, broker)
