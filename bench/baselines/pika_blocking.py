"""A blocking pika client on both sides: what a team writes from the RabbitMQ tutorials.

Worker: one process, one BlockingConnection, quorum queue, prefetch = window, manual ack after the
result is published (persistent, mandatory, publisher-confirmed: basic_publish blocks until the
broker confirms). Producer: one BlockingConnection; each job is published persistent and confirmed
(one at a time: a blocking confirm waits for the broker), results come back on a durable classic
reply queue through the default exchange, as jobstack's do.
"""

from __future__ import annotations

import signal
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from bench.baselines import common

JOBS = "bench.pika.jobs"
REPLIES = "bench.pika.replies"


def work(url: str, window: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(JOBS, durable=True, arguments=common.QUORUM)
    channel.basic_qos(prefetch_count=window)

    def on_job(channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        job_id, result = common.run_job(body)
        channel.basic_publish(
            "",
            properties.reply_to,
            result,
            pika.BasicProperties(delivery_mode=2, correlation_id=job_id, content_type="application/json"),
            mandatory=True,
        )
        channel.basic_ack(method.delivery_tag)

    channel.basic_consume(JOBS, on_job)
    # SIGTERM stops consuming between two deliveries (the thread-safe callback is signal-safe too).
    signal.signal(signal.SIGTERM, lambda *_: connection.add_callback_threadsafe(channel.stop_consuming))
    channel.start_consuming()
    connection.close()


def drive(url: str, n: int, window: int) -> dict[str, Any]:
    properties = pika.BasicProperties(delivery_mode=2, reply_to=REPLIES, content_type="application/json")

    def submit(channel: BlockingChannel, body: bytes) -> None:
        channel.basic_publish("", JOBS, body, properties, mandatory=True)  # returns once confirmed

    worker = common.module_worker("bench.baselines.pika_blocking", window)
    return common.with_worker(
        "pika", worker, url, JOBS, lambda: common.run_blocking_producer(url, REPLIES, n, window, submit)
    )


if __name__ == "__main__":
    common.main("pika_blocking", drive, work)
