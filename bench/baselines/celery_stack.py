"""Celery with acks_late and its rpc:// result backend: the task-queue framework most teams pick first.

Worker: `celery worker` as one process with the threads pool (8 threads, Dramatiq's default count,
so both frameworks run jobs on threads in one process), `task_acks_late` (ack after the task ran),
a quorum queue, prefetch = window (worker_prefetch_multiplier x concurrency). Publisher confirms
on every connection of the app (`broker_transport_options={"confirm_publish": True}`, which puts
each py-amqp channel in confirm mode: task publishes and the worker's result publishes alike);
tasks are persistent (Celery's default). Results go back through `rpc://`, with
`result_persistent=True`, to the producer's reply queue as Celery declares it (transient,
auto-delete: Celery gives no option to make it durable). Producer: `apply_async` (each publish
waits for its confirm), `AsyncResult.then` callbacks, and the rpc consumer drained in the main thread.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu import Queue

from bench.baselines import common

JOBS = "bench.celery.jobs"
THREADS = 8
URL = os.environ.get(common.URL_VARIABLE, "amqp://guest:guest@127.0.0.1:5672/%2F")

app = Celery("bench", broker=URL.replace("amqp://", "pyamqp://", 1), backend="rpc://")
app.conf.update(
    task_acks_late=True,
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    result_persistent=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=JOBS,
    task_queues=[Queue(JOBS, routing_key=JOBS, queue_arguments=common.QUORUM)],
    worker_hijack_root_logger=False,
)


@app.task(name="bench.job")
def job(body: str) -> str:
    return common.run_job(body.encode())[1].decode()


def work(url: str, window: int) -> None:
    app.conf.worker_prefetch_multiplier = math.ceil(window / THREADS)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={THREADS}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--queues={JOBS}",
        ]
    )


def _produce(n: int, window: int) -> common.InFlight:
    flight = common.InFlight(n, window)

    def answered(result: AsyncResult) -> None:
        flight.answered(result.id, result.successful())

    deadline = common.deadline_for(n)
    while not flight.done and time.monotonic() < deadline:
        while flight.wants_more():
            job_id, body = common.new_job()
            flight.submitting(job_id)
            job.apply_async((body.decode(),), task_id=job_id).then(answered)
        with contextlib.suppress(TimeoutError):  # a stalled run still meets its deadline
            app.backend.result_consumer.drain_events(timeout=1)
    return flight


def drive(url: str, n: int, window: int) -> dict[str, Any]:
    worker = common.module_worker("bench.baselines.celery_stack", window)
    return common.with_worker("celery", worker, url, JOBS, lambda: _produce(n, window))


if __name__ == "__main__":
    common.main("celery_stack", drive, work)
