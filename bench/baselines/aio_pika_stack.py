"""aio-pika on both sides: the asyncio client a team would pick for a hand-written service.

Worker: one process, one robust connection, a channel with publisher confirms, quorum queue,
prefetch = window; each delivery publishes its result (persistent, mandatory, awaited confirm) and
is acked after that. Producer: one channel with publisher confirms; a job is in flight from just
before its publish until its result arrives on a durable classic reply queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.baselines import common

JOBS = "bench.aio_pika.jobs"
REPLIES = "bench.aio_pika.replies"


async def _work(url: str, window: int) -> None:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=window)
    queue = await channel.declare_queue(JOBS, durable=True, arguments=common.QUORUM)

    async def on_job(message: AbstractIncomingMessage) -> None:
        job_id, seconds = common.read_job(message.body)
        await asyncio.sleep(seconds)
        result = aio_pika.Message(
            common.result_body(job_id),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=job_id,
            content_type="application/json",
        )
        await channel.default_exchange.publish(result, routing_key=message.reply_to or "", mandatory=True)
        await message.ack()

    await queue.consume(on_job)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await connection.close()


async def _drive(url: str, n: int, window: int) -> common.InFlight:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=window)
    replies = await channel.declare_queue(REPLIES, durable=True)
    flight = common.InFlight(n, window)
    free = asyncio.Event()

    async def on_result(message: AbstractIncomingMessage) -> None:
        job_id, ok = common.succeeded(message.body)
        flight.answered(job_id, ok)
        await message.ack()
        free.set()

    await replies.consume(on_result)

    async def submit(body: bytes) -> None:
        message = aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, reply_to=REPLIES, content_type="application/json"
        )
        await channel.default_exchange.publish(message, routing_key=JOBS, mandatory=True)

    deadline = common.deadline_for(n)
    publishes: set[asyncio.Task[None]] = set()
    while not flight.done and time.monotonic() < deadline:
        while flight.wants_more():
            job_id, body = common.new_job()
            flight.submitting(job_id)  # here, not in the task: wants_more() must see it at once
            task = asyncio.ensure_future(submit(body))  # confirms are awaited concurrently, as jobstack's UI does
            publishes.add(task)
            task.add_done_callback(publishes.discard)
        free.clear()
        with contextlib.suppress(TimeoutError):  # a stalled run still meets its deadline
            await asyncio.wait_for(free.wait(), timeout=1)
    if publishes:
        await asyncio.gather(*publishes)
    await connection.close()
    return flight


def work(url: str, window: int) -> None:
    asyncio.run(_work(url, window))


def drive(url: str, n: int, window: int) -> dict[str, Any]:
    worker = common.module_worker("bench.baselines.aio_pika_stack", window)
    return common.with_worker("aio-pika", worker, url, JOBS, lambda: asyncio.run(_drive(url, n, window)))


if __name__ == "__main__":
    common.main("aio_pika_stack", drive, work)
