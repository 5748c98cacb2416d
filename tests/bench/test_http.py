"""bench.http: both load generators account for every job; a 429 is counted apart, never as a success."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from bench.http import FixedRateRun, run_wrk
from tools.rabbitmq_local import free_port

from .benchrun import run_bench


def test_fixed_rate_and_flat_out_report_every_job_of_the_real_services() -> None:
    stdout, lines = run_bench(
        "bench.http", "--rate", "20", "--seconds", "2", "--duration", "2", "--connections", "2", "--poll-ms", "5"
    )
    header, fixed, flat = lines
    assert {"date", "cpus", "quiet"} <= header["context"].keys()

    assert fixed["mode"] == "fixed-rate"
    assert fixed["offered_jobs"] == fixed["submitted"] == fixed["finished"] == 40
    assert fixed["finished_by_status"] == {"succeeded": 40}
    assert fixed["rejected_429"] == fixed["errors"] == fixed["unfinished"] == 0
    assert fixed["requests"] == fixed["submitted"] + fixed["polls"]
    assert 0 < fixed["p50_ms"] <= fixed["p90_ms"] <= fixed["p99_ms"] <= fixed["max_ms"]

    assert flat["mode"] == "flat-out"
    assert flat["finished"] > 0 and flat["finished_by_status"] == {"succeeded": flat["finished"]}
    assert flat["finished"] + flat["unfinished"] == flat["submitted"]
    assert flat["unfinished"] <= 2  # one job per connection at most
    assert flat["errors"] == flat["rejected_429"] == 0
    assert flat["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert flat["requests"] >= flat["submitted"] + flat["polls"] - 2  # wrk may stop between send and answer
    assert 0 < flat["p50_ms"] <= flat["p99_ms"]

    assert "fixed-rate" in stdout and "flat-out" in stdout and "answered 429" in stdout


@pytest.fixture
def half_refusing_ui() -> Iterator[str]:
    """A real HTTP server with the UI's API that refuses every second POST with 429 and Retry-After."""
    answers = itertools.count()

    async def post_job(request: web.Request) -> web.Response:
        await request.json()
        number = next(answers)
        if number % 2:
            return web.json_response({"error": "too many pending jobs"}, status=429, headers={"Retry-After": "1"})
        return web.json_response(
            {"job_id": str(number), "status": "pending"}, status=202, headers={"Location": f"/jobs/{number}"}
        )

    async def get_job(request: web.Request) -> web.Response:
        return web.json_response({"job_id": request.match_info["job_id"], "status": "succeeded", "result": {}})

    app = web.Application()
    app.add_routes([web.post("/jobs", post_job), web.get("/jobs/{job_id}", get_job)])
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_the_fixed_rate_client_counts_429_apart_from_successes(half_refusing_ui: str) -> None:
    figures = asyncio.run(FixedRateRun(half_refusing_ui, rate=50, seconds=0.4, poll_seconds=0.001).run())
    assert figures["offered_jobs"] == 20
    assert figures["rejected_429"] == 10
    assert figures["submitted"] == figures["finished"] == 10
    assert figures["finished_by_status"] == {"succeeded": 10}
    assert figures["errors"] == 0


def test_wrk_counts_429_apart_from_successes(half_refusing_ui: str) -> None:
    figures = run_wrk(half_refusing_ui, duration=1, connections=1, poll_ms=0)
    assert figures["rejected_429"] > 0
    assert figures["finished"] > 0
    # Alternate answers: each refused POST sits between two accepted ones.
    assert abs(figures["rejected_429"] - figures["submitted"]) <= 1
    assert figures["finished_by_status"] == {"succeeded": figures["finished"]}
    assert figures["errors"] == 0
