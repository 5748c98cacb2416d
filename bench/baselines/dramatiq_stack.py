"""Dramatiq with its RabbitMQ broker: the other task-queue framework a team weighs against Celery.

Worker: `dramatiq` as one worker process (plus Dramatiq's supervising parent) with 8 threads
(Dramatiq's default), default middleware, prefetch = window (`dramatiq_queue_prefetch`). Dramatiq
acks a message after the actor returned (acks late by design) and publishes persistent messages
with confirms when `confirm_delivery=True`. Its queues are durable classic queues; the only change
made here is one line that adds `x-queue-type: quorum` to the arguments Dramatiq declares them with.

Dramatiq has no AMQP result backend (its Results middleware needs Redis or Memcached), so the
result path is built the way a team would: the actor publishes the result itself with a blocking
pika publish (persistent, mandatory, publisher-confirmed, one connection per worker thread) to the
producer's durable classic reply queue, before returning (and so before Dramatiq's ack). The
producer enqueues with `actor.send` (blocking, confirmed) and reads results with pika, so the
latency measured is the same as for the other stacks: publish to result received.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pika.adapters.blocking_connection import BlockingChannel

from bench.baselines import common

JOBS = "bench.dramatiq.jobs"
REPLIES = "bench.dramatiq.replies"
THREADS = 8
URL = os.environ.get(common.URL_VARIABLE, "amqp://guest:guest@127.0.0.1:5672/%2F")


class QuorumRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's broker, declaring its queues as quorum queues like every other stack here."""

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return {**super()._build_queue_arguments(queue_name), **common.QUORUM}


dramatiq.set_broker(QuorumRabbitmqBroker(url=URL, confirm_delivery=True))
_results = threading.local()


def _result_channel() -> BlockingChannel:
    """One confirmed channel per worker thread: pika connections must not be shared across threads."""
    channel: BlockingChannel | None = getattr(_results, "channel", None)
    if channel is None or channel.is_closed:
        channel = pika.BlockingConnection(pika.URLParameters(URL)).channel()
        channel.confirm_delivery()
        _results.channel = channel
    return channel


@dramatiq.actor(queue_name=JOBS, max_retries=0)
def job(body: str, reply_to: str) -> None:
    job_id, result = common.run_job(body.encode())
    properties = pika.BasicProperties(delivery_mode=2, correlation_id=job_id, content_type="application/json")
    _result_channel().basic_publish("", reply_to, result, properties, mandatory=True)


def worker_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "bench.baselines.dramatiq_stack",
        "--processes",
        "1",
        "--threads",
        str(THREADS),
    ]


def work(url: str, window: int) -> None:
    # Become Dramatiq's own command, so `work` runs exactly what the driver runs.
    os.execve(sys.executable, worker_command(), {**os.environ, "dramatiq_queue_prefetch": str(window)})  # noqa: S606


def drive(url: str, n: int, window: int) -> dict[str, Any]:
    def submit(_: BlockingChannel, body: bytes) -> None:
        job.send(body.decode(), REPLIES)  # on Dramatiq's own connection, confirmed; results come through pika

    worker = common.start_worker(worker_command(), dramatiq_queue_prefetch=str(window))
    return common.with_worker(
        "dramatiq", worker, url, JOBS, lambda: common.run_blocking_producer(url, REPLIES, n, window, submit)
    )


if __name__ == "__main__":
    common.main("dramatiq_stack", drive, work)
