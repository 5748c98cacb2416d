"""The original building blocks' side of the wire, written with plain pika (not the project's code).

The originals declare `job-exchange` as a direct, non-durable exchange, publish jobs with routing
key `job` and no properties, and each binds an exclusive, broker-named queue to the key it reads.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pika


def declare_exchange(channel: Any) -> None:
    channel.exchange_declare(exchange="job-exchange", exchange_type="direct")


def bind_exclusive_queue(channel: Any, routing_key: str) -> str:
    declare_exchange(channel)
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(exchange="job-exchange", queue=queue, routing_key=routing_key)
    return queue


def publish_job(channel: Any, value: int, job_id: str | None = None) -> str:
    job_id = job_id or str(uuid.uuid4())
    body = json.dumps({"job_id": job_id, "job_payload": {"type": "integer", "value": value}})
    channel.basic_publish(exchange="job-exchange", routing_key="job", body=body)
    return job_id


def publish_raw(channel: Any, body: bytes, routing_key: str = "job") -> None:
    channel.basic_publish(
        exchange="job-exchange", routing_key=routing_key, body=body, properties=pika.BasicProperties()
    )


def collect(channel: Any, queue: str, count: int, timeout: float = 30) -> list[tuple[Any, bytes]]:
    """Up to `count` messages from queue (acked), waiting at most timeout seconds."""
    received: list[tuple[Any, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            channel.connection.sleep(0.05)
            continue
        received.append((properties, body))
    return received
