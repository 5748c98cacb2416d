"""pika's socket writes, coalesced (jobstack.pika_writes), carry the same bytes in the same order.

Against the real broker: a burst of confirmed publishes in one loop turn, with empty bodies, bodies
split over several frames (above frame_max) and bodies larger than one coalesced send, so that the
kernel's send buffer fills and sends end part-way through a buffer.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pika
from jobstack import pika_writes
from jobstack.amqp import Session
from pika.adapters.utils import io_services_utils

QUEUE = "pika-writes-order"
SIZES = [0, 1, 7, 4096, 131_072, 131_073, 300_000, pika_writes.MAX_COALESCED_BYTES + 1, 65]


def body_of(index: int) -> bytes:
    size = SIZES[index % len(SIZES)]
    seed = hashlib.sha256(str(index).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def test_coalescing_is_installed_for_plain_tcp_only() -> None:
    plaintext = io_services_utils._AsyncPlaintextTransport._produce
    assert plaintext is not io_services_utils._AsyncTransportBase._produce
    # TLS keeps pika's own _produce: OpenSSL wants the same buffer again after WANT_WRITE.
    assert io_services_utils._AsyncSSLTransport._produce.__module__ == io_services_utils.__name__


def test_a_burst_of_publishes_arrives_whole_and_in_order(amqp_url: str, channel: Any) -> None:
    channel.queue_declare(queue=QUEUE, durable=True)
    count = 360

    async def publish_all() -> None:
        session = await Session.open(pika.URLParameters(amqp_url))
        try:
            # One loop turn: every frame is queued before the first send.
            confirms = [
                session.publish("", QUEUE, body_of(index), pika.BasicProperties(message_id=f"m{index}"))
                for index in range(count)
            ]
            await asyncio.wait_for(asyncio.gather(*confirms), timeout=120)
        finally:
            await session.close()

    asyncio.run(publish_all())
    received: list[tuple[str, bytes]] = []
    for method, properties, body in channel.consume(QUEUE, inactivity_timeout=10):
        if method is None:
            break
        received.append((properties.message_id, body))
        channel.basic_ack(method.delivery_tag)
        if len(received) == count:
            break
    channel.cancel()
    assert [message_id for message_id, _ in received] == [f"m{index}" for index in range(count)]
    mismatched = [message_id for index, (message_id, body) in enumerate(received) if body != body_of(index)]
    assert not mismatched, f"{len(mismatched)} bodies differ, first {mismatched[:3]}"
