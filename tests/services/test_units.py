"""Small pure functions whose behaviour the failure tests rely on."""

from __future__ import annotations

import asyncio
import json
import time

from jobstack.engine import delivery_attempt
from jobstack.page import MAX_QUEUED_BYTES, RECENT_JOBS, EventClient, EventHub, job_row
from jobstack.results import Finished, JobView
from jobstack.service import BACKOFF_CAP_SECONDS, backoff_delay


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    first = [backoff_delay(1) for _ in range(200)]
    assert all(0.25 <= delay <= 0.5 for delay in first)
    assert len({round(delay, 6) for delay in first}) > 100  # jittered, not in lock step
    assert all(2.0 <= backoff_delay(4) <= 4.0 for _ in range(100))
    assert all(BACKOFF_CAP_SECONDS / 2 <= backoff_delay(50) <= BACKOFF_CAP_SECONDS for _ in range(100))


def test_delivery_attempt_reads_the_quorum_queue_counters() -> None:
    assert delivery_attempt(None, redelivered=False) == 1
    assert delivery_attempt({"x-delivery-count": 2}, redelivered=True) == 3
    # RabbitMQ 4.x: a consumer crash raises x-acquired-count, not x-delivery-count.
    assert delivery_attempt({"x-delivery-count": 0, "x-acquired-count": 4}, redelivered=True) == 5
    assert delivery_attempt({}, redelivered=True) == 2


def test_the_view_lists_recent_jobs_newest_first_and_tells_a_watcher_of_each_change() -> None:
    view = JobView(max_pending=10, max_finished=10, finished_max_age=3600)
    changed: list[str] = []
    view.job_seen("a", 1.0)  # nobody watches yet
    view.on_change = changed.append
    view.job_seen("b", 2.0)
    view.job_seen("b", 2.5)  # a duplicate accepted record: no change
    view.result_seen("a", "succeeded", b"{}", time.monotonic())
    view.job_seen("c", 3.0)
    assert changed == ["b", "a", "c"]
    recent = view.recent(2)
    assert [job_id for job_id, _state in recent] == ["a", "c"]  # a finished last
    assert isinstance(recent[0][1], Finished) and recent[1][1] == "pending"
    assert [job_id for job_id, _state in view.recent(10)] == ["a", "c", "b"]


def test_a_page_row_is_built_from_any_result_body_without_raising() -> None:
    job_id = "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11"
    good = {
        "job_id": job_id,
        "status": "succeeded",
        "engine": "engine-1",
        "started_at": "2026-11-28T00:01:02.345Z",
        "finished_at": "2026-11-28T00:01:05.347Z",
    }
    row = job_row(job_id, Finished("succeeded", json.dumps(good).encode(), 0.0))
    assert (row["state"], row["engine"], row["duration_seconds"], row["error"]) == (
        "succeeded",
        "engine-1",
        3.002,
        None,
    )
    assert job_row(job_id, "pending")["state"] == "pending"
    no_duration = [
        b"\xff\xfe",
        b"[" * 10000,
        b"job complete",
        json.dumps({**good, "engine": 7, "error": ["x"], "started_at": "now", "finished_at": 3}).encode(),
        json.dumps({**good, "started_at": good["finished_at"], "finished_at": good["started_at"]}).encode(),
        json.dumps({**good, "finished_at": "2026-11-28T00:01:05"}).encode(),  # no time zone
        b"x" * 70_000,
    ]
    oversized_text = json.dumps({**good, "engine": "\u202e" + "x" * 10_000, "error": "\n" * 5000}).encode()
    for body in [*no_duration, oversized_text]:
        row = job_row(job_id, Finished("failed", body, 0.0))
        assert row["state"] == "failed", body[:40]
        assert (row["duration_seconds"] is None) == (body in no_duration), body[:40]
        assert all(value is None or len(value) <= 300 for value in (row["engine"], row["error"]))
        assert all(value is None or value.isprintable() for value in (row["engine"], row["error"]))


def test_an_event_client_that_falls_too_far_behind_is_dropped() -> None:
    async def scenario() -> tuple[bool, bytes | None]:
        client = EventClient()
        client.push(b"a" * 1000)
        first = await client.next()
        for _ in range(MAX_QUEUED_BYTES // 1000 + 1):
            client.push(b"b" * 1000)
        return first == b"a" * 1000, await client.next()

    assert asyncio.run(scenario()) == (True, None)


def test_a_burst_of_changes_is_sent_as_one_snapshot() -> None:
    async def scenario() -> list[bytes]:
        view = JobView(max_pending=1000, max_finished=1000, finished_max_age=3600)

        async def no_queue() -> None:
            return None

        hub = EventHub(view, max_clients=1, probe_queue=no_queue, pending_count=lambda: 0, retry_after_seconds=1)
        client = hub._join()
        assert client is not None and hub._join() is None  # the bound
        for number in range(RECENT_JOBS + 5):
            view.job_seen(f"job-{number}", float(number))
        hub._flush()
        view.job_seen("one-more", 100.0)
        hub._flush()
        chunks = []
        while client._chunks:
            chunks.append(await client.next() or b"")
        hub._leave(client)
        assert view.on_change is None  # nobody watches: the hot path is back to one None check
        hub.close_all()
        return chunks

    # (The queue poll never ran: no loop turn passed between the join and the flushes.)
    chunks = asyncio.run(scenario())
    assert [chunk.split(b"\n")[0] for chunk in chunks] == [b"event: snapshot", b"event: jobs"]
    snapshot = json.loads(chunks[0].split(b"data: ")[1])
    assert len(snapshot["jobs"]) == RECENT_JOBS and snapshot["jobs"][0]["job_id"] == f"job-{RECENT_JOBS + 4}"
    assert [row["job_id"] for row in json.loads(chunks[1].split(b"data: ")[1])["jobs"]] == ["one-more"]
