"""The benchmark's load generator: the real UserInterface in this process, driven by submit().

    python -m bench.load_generator N WINDOW RATE     (configured like the UI: AMQP_URL, USER_INTERFACE_*)

Started by bench/pipeline.py with this checkout's `jobstack` on PYTHONPATH. It waits until the UI
is ready, submits N trivial jobs (at most WINDOW in flight, or an open loop at RATE jobs/s when
RATE > 0), waits for every result from the results stream, prints one line
{"summary": {...}} and exits. Kept out of the services' package and images on purpose.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from jobstack.config import load_settings
from jobstack.user_interface import SubmitError, UserInterface, UserInterfaceSettings

RESULT_TIMEOUT_SECONDS = 120


def summarize(latencies: list[float], failures: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def percentile(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "completed": len(ordered),
        "failed": failures,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(len(ordered) / elapsed, 1) if elapsed else None,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }


async def generate(ui: UserInterface, n: int, window: int, rate: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    slots = asyncio.Semaphore(window)

    async def one() -> None:
        nonlocal failures
        submitted = time.monotonic()
        try:
            job_id = await ui.submit({"type": "integer", "value": 0})
            await asyncio.wait_for(ui.view.wait(job_id), timeout=RESULT_TIMEOUT_SECONDS)
            latencies.append(time.monotonic() - submitted)
        except (TimeoutError, SubmitError) as error:
            failures += 1
            print(f"job failed: {error or 'result timeout'}", file=sys.stderr)
        finally:
            slots.release()

    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    for index in range(n):
        if rate:
            # Open loop: submit on a fixed schedule whatever the latency is.
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        await slots.acquire()
        task = asyncio.ensure_future(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks))
    return summarize(latencies, failures, time.monotonic() - started)


async def run(n: int, window: int, rate: float) -> dict[str, Any]:
    config = Path(__file__).resolve().parents[1] / "services" / "user_interface" / "config.ini"
    settings = load_settings(UserInterfaceSettings, config, "user-interface", "USER_INTERFACE")
    ui = UserInterface(settings)
    service = asyncio.ensure_future(ui.run())
    deadline = time.monotonic() + 60
    while not ui.ready:
        if service.done() or time.monotonic() > deadline:
            raise SystemExit(f"load generator: the user_interface did not become ready: {service}")
        await asyncio.sleep(0.05)
    try:
        return await generate(ui, n, window, rate)
    finally:
        await ui.shutdown()
        await service


def main() -> None:
    n, window, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    try:
        import uvloop  # the services run on uvloop where the wheel exists; so does their benchmark
    except ImportError:
        summary = asyncio.run(run(n, window, rate))
    else:
        summary = uvloop.run(run(n, window, rate))
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
