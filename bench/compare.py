"""jobstack beside the stacks a team would pick instead, on one private broker in one run.

    make bench-compare                       # = python -m bench.compare (from the repository root)
    python -m bench.compare --n 5000 --window 200 --warmup 500 --stacks jobstack,celery

Needs the pinned baselines: .venv/bin/pip install -r bench/requirements.txt

Every stack runs the same trivial job (jobstack's wire body, an integer job of 0 seconds) with the
same guarantees: persistent messages, publisher confirms, manual acks after the work (acks late),
a durable quorum jobs queue, and a result going back to the producer. Each stack gets the same N,
the same window (at most that many jobs submitted and not yet answered; also the worker's prefetch),
one worker process, and its own vhost on the same private Debian rabbitmq-server. Stacks run one
after another, never side by side.

How each stack does it:
- jobstack: bench.pipeline.run_pipeline, which starts the real engine and user_interface processes;
  the user_interface submits (persistent, confirmed) and reads each result from the results stream.
- celery: see bench/baselines/celery_stack.py (acks_late, confirm_publish, results via rpc://).
- dramatiq: see bench/baselines/dramatiq_stack.py (no AMQP result backend exists: the actor
  publishes the result itself with a confirmed pika publish before Dramatiq acks).
- aio-pika and pika: hand-written worker and producer, bench/baselines/aio_pika_stack.py and
  pika_blocking.py.

Latency is from just before a job is published to the moment its result reaches the producer;
jobs/s is completed jobs over the time from the first publish to the last result.

CPU seconds per 1,000 jobs are marginal: each stack runs twice, first `--warmup` jobs and then N,
and the figure is (CPU of the N run - CPU of the warm-up run) / (N - warmup) x 1000, so that the
start-up of processes, imports and connections cancels out. Three figures: `machine` is the
whole-machine /proc/stat busy time (broker included; the honest cost on a quiet machine, noise
from anything else running), `stack` the stack's own processes (producer and worker, from
getrusage of the children), `broker` the RabbitMQ node's processes.

Output: a table on stdout, then one JSON line for the run's context and one per stack.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import CpuSample, context_lines, run_context, show, text_table
from bench.pipeline import run_pipeline
from tools.rabbitmq_local import Broker

# name -> (module run as `python -m <module> drive`, or None for jobstack itself; how it is measured)
STACKS: dict[str, tuple[str | None, str]] = {
    "jobstack": (None, "engine + user_interface processes (bench.pipeline.run_pipeline), results from the stream"),
    "celery": (
        "bench.baselines.celery_stack",
        "acks_late, threads pool x8, confirm_publish, result via rpc:// (Celery's transient reply queue)",
    ),
    "dramatiq": (
        "bench.baselines.dramatiq_stack",
        "8 threads, acks after the actor; result: actor's own confirmed pika publish (no AMQP result backend)",
    ),
    "aio-pika": ("bench.baselines.aio_pika_stack", "hand-written asyncio worker, confirmed result publish, then ack"),
    "pika": ("bench.baselines.pika_blocking", "hand-written BlockingConnection worker, confirmed result, then ack"),
}
BASELINE_PACKAGES = ("celery", "kombu", "dramatiq", "aio-pika", "pika")


def check_baselines(stacks: list[str]) -> None:
    """One clear line when the pinned baselines are missing, before any broker starts."""
    modules = {"celery": "celery", "dramatiq": "dramatiq", "aio-pika": "aio_pika", "pika": "pika"}
    missing = [stack for stack in stacks if stack in modules and importlib.util.find_spec(modules[stack]) is None]
    if missing:
        raise SystemExit(
            f"bench: {', '.join(missing)} not installed; run: .venv/bin/pip install -r bench/requirements.txt"
        )


def versions() -> dict[str, str]:
    found = {}
    for package in BASELINE_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def run_once(stack: str, url: str, n: int, window: int) -> dict[str, Any]:
    """One run of one stack: its figures, every job checked to have completed."""
    module = STACKS[stack][0]
    if module is None:
        figures = run_pipeline(url, stack, n, window, 0)
        completed = figures["n"]
    else:
        done = subprocess.run(
            [sys.executable, "-m", module, "drive", "--n", str(n), "--window", str(window)],
            env={**os.environ, "BENCH_AMQP_URL": url},
            capture_output=True,
            text=True,
            timeout=600 + n / 10,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"bench: {stack} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
        figures = json.loads(lines[-1])
        completed = figures["completed"]
    if completed != n:
        raise SystemExit(f"bench: {stack} completed {completed} of {n} jobs")
    return {key: figures[key] for key in ("seconds", "jobs_per_s", "p50_ms", "p99_ms")}


def per_thousand(seconds: float | None, jobs: int) -> float | None:
    return None if seconds is None else round(seconds / jobs * 1000, 3)


def measure(stack: str, url: str, n: int, window: int, warmup: int, broker_group: int) -> dict[str, Any]:
    """The warm-up run, then the measured run; CPU per 1,000 jobs is the difference between the two."""
    cost = CpuSample(0.0, 0.0, 0.0)
    if warmup:
        before = CpuSample.take(broker_group)
        run_once(stack, url, warmup, window)
        cost = CpuSample.take(broker_group) - before
    before = CpuSample.take(broker_group)
    figures = run_once(stack, url, n, window)
    spent = CpuSample.take(broker_group) - before - cost
    jobs = n - warmup
    return {
        "bench": "compare",
        "stack": stack,
        "n": n,
        "window": window,
        **figures,
        "cpu_s_per_1k_jobs": {
            "machine": per_thousand(spent.machine, jobs),
            "stack": per_thousand(spent.processes, jobs),
            "broker": per_thousand(spent.broker, jobs),
        },
        "cpu_basis": f"marginal: run of {n} minus run of {warmup}"
        if warmup
        else f"whole run of {n}, start-up included",
        "method": STACKS[stack][1],
    }


def ratio(mine: float | None, theirs: float | None) -> float | None:
    return None if not mine or not theirs else round(mine / theirs, 2)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """jobstack's figure divided by each stack's, from this one run."""
    jobstack = next((row for row in rows if row["stack"] == "jobstack"), None)
    if jobstack is None:
        return
    for row in rows:
        row["jobstack_ratio"] = {
            "jobs_per_s": ratio(jobstack["jobs_per_s"], row["jobs_per_s"]),
            "p99_ms": ratio(jobstack["p99_ms"], row["p99_ms"]),
            "cpu_machine": ratio(jobstack["cpu_s_per_1k_jobs"]["machine"], row["cpu_s_per_1k_jobs"]["machine"]),
        }


def table(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    columns = ["stack", "jobs/s", "p50 ms", "p99 ms", "CPU s/1k machine", "stack", "broker"]
    with_ratios = any("jobstack_ratio" in row for row in rows)
    if with_ratios:
        columns += ["jobstack ÷ jobs/s", "p99", "CPU"]
    body = []
    for row in rows:
        cpu = row["cpu_s_per_1k_jobs"]
        cells = [row["stack"], row["jobs_per_s"], row["p50_ms"], row["p99_ms"], cpu["machine"], cpu["stack"]]
        cells.append(cpu["broker"])
        if with_ratios:
            cells += [row["jobstack_ratio"][key] for key in ("jobs_per_s", "p99_ms", "cpu_machine")]
        body.append([show(cell) for cell in cells])
    lines = text_table(columns, body)
    notes = [
        "",
        f"N={header['n']} jobs per stack, window={header['window']} in flight (also the worker's prefetch), "
        f"one worker process each, broker {header['broker']} (one private node, one vhost per stack).",
        "Every stack: persistent messages, publisher confirms, ack after the work, quorum jobs queue, "
        "result back to the producer.",
        "Latency: publish -> result at the producer. CPU s/1k: "
        + (
            f"marginal (run of {header['n']} minus a warm-up run of {header['warmup']}, so start-up cancels out); "
            if header["warmup"]
            else "whole run, process start-up included; "
        )
        + "machine = whole-machine /proc/stat busy time, broker INCLUDED; stack = its producer and worker "
        "processes; broker = the RabbitMQ node alone.",
        "jobstack ÷ X: jobstack's figure over X's (jobs/s > 1: jobstack faster; p99 and CPU < 1: jobstack lower).",
        *[f"  {stack}: {STACKS[stack][1]}" for stack in (row["stack"] for row in rows)],
        *context_lines(header["context"]),
    ]
    return "\n".join(lines + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=int(os.environ.get("N", "5000")), help="jobs per stack (default 5000)")
    parser.add_argument("--window", type=int, default=int(os.environ.get("WINDOW", "200")), help="jobs in flight")
    parser.add_argument("--warmup", type=int, default=500, help="jobs of the warm-up run (0: no warm-up run)")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated, from {', '.join(STACKS)}")
    arguments = parser.parse_args()
    stacks = [name.strip() for name in arguments.stacks.split(",") if name.strip()]
    unknown = [name for name in stacks if name not in STACKS]
    if unknown:
        parser.error(f"--stacks: unknown {', '.join(unknown)}; choose from {', '.join(STACKS)}")
    if arguments.n < 1 or arguments.window < 1 or not 0 <= arguments.warmup < arguments.n:
        parser.error("need --n >= 1, --window >= 1 and 0 <= --warmup < --n")
    check_baselines(stacks)

    context = run_context()  # before the broker starts: was the machine quiet?
    broker = Broker(Path(tempfile.mkdtemp(prefix="jobstack-bench-compare-")))
    broker.start()
    try:
        assert broker.process is not None
        overview = broker.api("GET", "/api/overview")
        assert isinstance(overview, dict)
        header = {
            "bench": "compare",
            "context": context,
            "n": arguments.n,
            "window": arguments.window,
            "warmup": arguments.warmup,
            "broker": f"RabbitMQ {overview['rabbitmq_version']} (Erlang {overview['erlang_version']})",
            "versions": versions(),
        }
        rows = []
        for stack in stacks:
            url = broker.add_vhost(f"bench-{stack}")
            print(f"bench: running {stack} ...", file=sys.stderr, flush=True)
            rows.append(measure(stack, url, arguments.n, arguments.window, arguments.warmup, broker.process.pid))
    finally:
        broker.cleanup()
    add_ratios(rows)
    print(table(rows, header))
    print(json.dumps(header))
    for row in rows:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
