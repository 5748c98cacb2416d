"""The HTTP path end to end: POST /jobs, then GET /jobs/<id> until the job is no longer pending.

    make bench-http                          # = python -m bench.http (from the repository root)
    python -m bench.http --rate 200 --seconds 10 --duration 10 --connections 8 --poll-ms 5

Starts a private Debian rabbitmq-server, one engine and one user_interface (the real processes,
their default settings, configured by environment), then measures twice:

- fixed rate: an asyncio client (aiohttp) submits `--rate` jobs/s for `--seconds`, open loop (a job
  every 1/rate s whatever the answers), each job polled every `--poll-ms` until finished.
- flat out: wrk, with bench/http_jobs.lua, one job at a time per connection (`--connections`, one
  wrk thread each), as fast as the answers come, for `--duration`.

Reported: HTTP requests/s (POSTs and GETs), finished jobs/s, end-to-end latency percentiles (just
before the POST -> the GET that shows the job finished, so up to one poll interval is included) and
per-request latency. A 429 (back-pressure, with Retry-After) is counted apart and never as a
success; neither client retries it. Jobs still pending at the end of a run are reported as such.
Output: a table on stdout, then one JSON line for the run's context and one per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.measure import context_lines, latency_figures, percentile_ms, run_context, show, text_table
from tools.rabbitmq_local import Broker, free_port

ROOT = Path(__file__).resolve().parents[1]
WRK_SCRIPT = Path(__file__).with_name("http_jobs.lua")
JOB = {"type": "integer", "value": 0}
# A job not finished this long after its POST counts as unfinished rather than stalling the run.
JOB_TIMEOUT_SECONDS = 30.0


@contextlib.contextmanager
def services(amqp_url: str, logs: Path) -> Iterator[str]:
    """One engine and one user_interface on free ports; yields the UI's base URL once both are ready."""
    engine_port, ui_port = free_port(), free_port()
    common = {**os.environ, "AMQP_URL": amqp_url}
    started = []
    try:
        for name, env in (
            ("engine", {"ENGINE_HTTP_PORT": str(engine_port), "ENGINE_LOG_LEVEL": "warning"}),
            ("user_interface", {"USER_INTERFACE_HTTP_PORT": str(ui_port), "USER_INTERFACE_LOG_LEVEL": "warning"}),
        ):
            with open(logs / f"{name}.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, str(ROOT / "services" / name / f"{name}.py")],
                    env={**common, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append((name, process))
        for (name, process), port in zip(started, (engine_port, ui_port), strict=True):
            wait_ready(name, process, port, logs / f"{name}.log")
        yield f"http://127.0.0.1:{ui_port}"
    finally:
        for _, process in started:
            process.terminate()
        for _, process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(name: str, process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {name} exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {name} not ready within {timeout} s; see {log}")


class FixedRateRun:
    """Open-loop client: one job every 1/rate s; each job is polled until it is no longer pending."""

    def __init__(self, base_url: str, rate: float, seconds: float, poll_seconds: float) -> None:
        self.base_url, self.rate, self.seconds, self.poll_seconds = base_url, rate, seconds, poll_seconds
        self.latencies: list[float] = []
        self.request_latencies: list[float] = []
        self.counts: Counter[str] = Counter()
        self.finished_by_status: Counter[str] = Counter()

    async def _request(self, session: aiohttp.ClientSession, method: str, path: str) -> tuple[int, Any]:
        started = time.monotonic()
        body = JOB if method == "POST" else None
        async with session.request(method, self.base_url + path, json=body) as answer:
            document = await answer.json(content_type=None) if answer.status in (200, 202) else None
            location = answer.headers.get("Location")
        self.request_latencies.append(time.monotonic() - started)
        self.counts["requests"] += 1
        return answer.status, (document, location)

    async def _one_job(self, session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        try:
            status, (document, location) = await self._request(session, "POST", "/jobs")
            if status == 429:
                self.counts["rejected_429"] += 1
                return
            if status != 202 or not location:
                self.counts["errors"] += 1
                return
            self.counts["submitted"] += 1
            while time.monotonic() - started < JOB_TIMEOUT_SECONDS:
                await asyncio.sleep(self.poll_seconds)
                self.counts["polls"] += 1
                status, (document, _) = await self._request(session, "GET", location)
                if status != 200:
                    self.counts["errors"] += 1
                    return
                if document.get("status") != "pending":
                    self.latencies.append(time.monotonic() - started)
                    self.counts["finished"] += 1
                    self.finished_by_status[str(document.get("status"))] += 1
                    return
            self.counts["unfinished"] += 1
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.counts["errors"] += 1

    async def run(self) -> dict[str, Any]:
        jobs = int(self.rate * self.seconds)
        connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue a request behind a pool limit
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.monotonic()
            tasks = []
            for index in range(jobs):
                await asyncio.sleep(max(0.0, started + index / self.rate - time.monotonic()))
                tasks.append(asyncio.ensure_future(self._one_job(session)))
            await asyncio.gather(*tasks)
            elapsed = time.monotonic() - started
        ordered = sorted(self.request_latencies)
        return {
            "mode": "fixed-rate",
            "client": "aiohttp (open loop)",
            "offered_jobs_per_s": self.rate,
            "offered_jobs": jobs,
            "seconds": round(elapsed, 3),
            "requests": self.counts["requests"],
            "requests_per_s": round(self.counts["requests"] / elapsed, 1),
            "submitted": self.counts["submitted"],
            "finished": self.counts["finished"],
            "finished_jobs_per_s": round(self.counts["finished"] / elapsed, 1),
            "finished_by_status": dict(self.finished_by_status),
            "rejected_429": self.counts["rejected_429"],
            "errors": self.counts["errors"],
            "unfinished": self.counts["unfinished"],
            "polls": self.counts["polls"],
            "request_p50_ms": percentile_ms(ordered, 0.50),
            "request_p99_ms": percentile_ms(ordered, 0.99),
            **latency_figures(self.latencies),
        }


def run_wrk(base_url: str, duration: float, connections: int, poll_ms: float) -> dict[str, Any]:
    """wrk flat out: `connections` connections (one thread each), each one job at a time."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: wrk not found; install Debian's wrk package (apt-get install wrk)")
    done = subprocess.run(
        [wrk, "-t", str(connections), "-c", str(connections), "-d", f"{duration:g}s", "-s", str(WRK_SCRIPT), base_url],
        env={**os.environ, "BENCH_POLL_MS": f"{poll_ms:g}"},
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    found = re.search(r"^BENCH_JSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise SystemExit(f"bench: wrk failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    figures = json.loads(found.group(1))
    seconds = figures.pop("duration_s")
    return {
        "mode": "flat-out",
        "client": f"wrk, {connections} connections, one job at a time each",
        "seconds": seconds,
        "requests": figures["requests"],
        "requests_per_s": round(figures["requests"] / seconds, 1),
        "submitted": figures["submitted"],
        "finished": figures["finished"],
        "finished_jobs_per_s": round(figures["finished"] / seconds, 1),
        # At most one job per connection is still pending when wrk stops.
        "unfinished": figures["submitted"] - figures["finished"],
        **{key: value for key, value in figures.items() if key not in ("requests", "submitted", "finished")},
    }


def table(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    columns = ["mode", "req/s", "jobs/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "req p99 ms", "429", "errors"]
    keys = ["mode", "requests_per_s", "finished_jobs_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
    keys += ["request_p99_ms", "rejected_429", "errors"]
    body = [[show(row.get(key)) for key in keys] for row in rows]
    lines = text_table(columns, body)
    notes = [
        "",
        "One engine and one user_interface (default settings) on a private broker "
        f"({header['broker']}); job {json.dumps(JOB)}.",
        "p50..max: end to end, POST sent -> the GET that shows the job finished "
        f"(polled every {header['poll_ms']:g} ms, so up to that much is included). req/s counts POSTs and GETs.",
        *[
            f"  {row['mode']}: {row['client']}; {row['submitted']} submitted, {row['finished']} finished "
            f"{row.get('finished_by_status', {})}, {row['unfinished']} still pending at the end, "
            f"{row['rejected_429']} answered 429 (not retried, not counted as successes)"
            for row in rows
        ],
        *context_lines(header["context"]),
    ]
    return "\n".join(lines + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200, help="fixed-rate run: offered jobs/s (default 200)")
    parser.add_argument("--seconds", type=float, default=10, help="fixed-rate run: seconds of offered load")
    parser.add_argument("--duration", type=float, default=10, help="flat-out run: seconds of wrk")
    parser.add_argument("--connections", type=int, default=8, help="flat-out run: wrk connections (default 8)")
    parser.add_argument("--poll-ms", type=float, default=5, help="interval between two GETs of one job")
    arguments = parser.parse_args()
    if arguments.rate <= 0 or arguments.seconds <= 0 or arguments.duration < 1 or arguments.connections < 1:
        parser.error("need --rate > 0, --seconds > 0, --duration >= 1 and --connections >= 1")
    if arguments.poll_ms < 0:
        parser.error("--poll-ms must be >= 0")

    context = run_context()
    base = Path(tempfile.mkdtemp(prefix="jobstack-bench-http-"))
    (base / "rabbitmq").mkdir()
    broker = Broker(base / "rabbitmq")
    finished = False
    try:
        broker.start()
        overview = broker.api("GET", "/api/overview")
        assert isinstance(overview, dict)
        header = {
            "bench": "http",
            "context": context,
            "broker": f"RabbitMQ {overview['rabbitmq_version']}",
            "poll_ms": arguments.poll_ms,
        }
        with services(broker.url(), base) as ui:
            print("bench: fixed rate ...", file=sys.stderr, flush=True)
            fixed = FixedRateRun(ui, arguments.rate, arguments.seconds, arguments.poll_ms / 1000)
            rows = [asyncio.run(fixed.run())]
            print("bench: flat out (wrk) ...", file=sys.stderr, flush=True)
            rows.append(run_wrk(ui, arguments.duration, arguments.connections, arguments.poll_ms))
        finished = True
    finally:
        broker.cleanup()
        if finished:  # otherwise keep the services' logs that the error message points to
            shutil.rmtree(base, ignore_errors=True)
    print(table(rows, header))
    print(json.dumps(header))
    for row in rows:
        print(json.dumps({"bench": "http", **row}), flush=True)


if __name__ == "__main__":
    main()
