"""End-to-end benchmark: trivial jobs (value 0) through the user_interface's submit path and one engine.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ N=5000 python -m bench.pipeline            # throughput
    AMQP_URL=... python -m bench.pipeline --rate 500 --seconds 10                           # latency at 500 jobs/s

Run it from the repository root (`python -m` puts the root on sys.path for `tools`).

Without AMQP_URL it starts a private Debian rabbitmq-server (as the tests do). Semantics are the
production ones: persistent messages, publisher confirms on both sides, manual acks, quorum queue,
results read back from the results stream. The engine runs as its own process
(`services/engine/engine.py`); the load generator runs in a second process around the real
UserInterface class and calls the same submit() as POST /jobs (HTTP is not part of the figure).
Prints one JSON line per run: {"name", "n", "seconds", "jobs_per_s", "p50_ms", "p99_ms"}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.rabbitmq_local import Broker, free_port

ROOT = Path(__file__).resolve().parents[1]


def checkout_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment for a service process: this checkout's `jobstack` package first."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "services"), str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_pipeline(amqp_url: str, name: str, n: int, window: int, rate: float) -> dict[str, Any]:
    """n jobs with at most window in flight (rate > 0: an open loop at rate jobs/s); one result dict."""
    engine_env = checkout_environment(
        {
            "AMQP_URL": amqp_url,
            "ENGINE_HTTP_PORT": str(free_port()),
            "ENGINE_LOG_LEVEL": "warning",
            "ENGINE_PREFETCH": str(max(window, 1)),
        }
    )
    generator_env = checkout_environment(
        {
            "AMQP_URL": amqp_url,
            "USER_INTERFACE_HTTP_PORT": str(free_port()),
            "USER_INTERFACE_LOG_LEVEL": "warning",
            # The whole run may be pending at once in open-loop mode.
            "USER_INTERFACE_MAX_PENDING": str(max(n, 1) + 1),
            "USER_INTERFACE_RESULTS_KEPT": str(max(n, 1) + 1),
            "USER_INTERFACE_RESULTS_WINDOW_SECONDS": "0",
        }
    )
    engine = subprocess.Popen([sys.executable, str(ROOT / "services/engine/engine.py")], env=engine_env)
    try:
        generator = subprocess.run(
            [sys.executable, "-m", "bench.load_generator", str(n), str(window), str(rate)],
            cwd=ROOT,
            env=generator_env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        engine.terminate()
        engine.wait(timeout=60)
    summaries = [json.loads(line)["summary"] for line in generator.stdout.splitlines() if line.startswith('{"summary"')]
    if generator.returncode != 0 or not summaries:
        failure = generator.stderr.strip()[-800:]
        raise SystemExit(f"bench: load generator failed (exit {generator.returncode}): {failure}")
    summary = summaries[0]
    if summary["failed"]:
        raise SystemExit(f"bench: {summary['failed']} of {n} jobs failed")
    return {
        "name": name,
        "n": summary["completed"],
        "seconds": summary["seconds"],
        "jobs_per_s": summary["jobs_per_s"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=0, help="offered jobs/s (latency mode); 0 = as fast as possible")
    parser.add_argument("--seconds", type=float, default=10, help="duration of the latency mode")
    parser.add_argument(
        "--window",
        type=int,
        default=int(os.environ.get("WINDOW", "200")),
        help="jobs in flight in throughput mode (default 200)",
    )
    arguments = parser.parse_args()
    n = int(os.environ.get("N", "5000"))
    broker = None
    amqp_url = os.environ.get("AMQP_URL")
    if not amqp_url:
        broker = Broker(Path(tempfile.mkdtemp(prefix="jobstack-bench-")))
        broker.start()
        amqp_url = broker.url()
    try:
        if arguments.rate:
            count = int(arguments.rate * arguments.seconds)
            # Open loop: a job every 1/rate s whatever the latency; the window only caps memory.
            result = run_pipeline(amqp_url, f"latency@{arguments.rate:g}/s", count, 10000, arguments.rate)
        else:
            result = run_pipeline(amqp_url, "throughput", n, arguments.window, 0)
        print(json.dumps(result), flush=True)
    finally:
        if broker is not None:
            broker.cleanup()


if __name__ == "__main__":
    main()
