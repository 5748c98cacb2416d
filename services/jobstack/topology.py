"""Exchanges and queues, declared by the services on every (re)connect so they survive broker restarts.

Each declaration carries exactly the arguments an operator would declare (a Messaging Topology
Operator `Queue` with the same type): limits such as delivery-limit, max-length, overflow or a
stream's retention belong in policies, so that changing them never makes a declaration conflict.
"""

from __future__ import annotations

from .amqp import Session
from .config import ServiceSettings
from .protocol import EXCHANGE, JOB_KEY, RESULT_KEY


async def declare_jobs(session: Session, settings: ServiceSettings) -> None:
    """job-exchange as the original services declare it, and the shared durable jobs queue.

    Both sides declare the queue, so jobs published before any engine starts are kept.
    """
    # Direct and non-durable, exactly as the original services declare it: RabbitMQ refuses a
    # second declaration with other flags, and old and new services must share the exchange.
    await session.declare_exchange(EXCHANGE, "direct", durable=False)
    await session.declare_queue(settings.jobs_queue, {"x-queue-type": settings.jobs_queue_type})
    await session.bind(settings.jobs_queue, EXCHANGE, JOB_KEY)


async def declare_results_stream(session: Session, settings: ServiceSettings) -> None:
    """The durable stream that records every job and every result (after declare_jobs).

    Both services declare and bind it on every connect. job-exchange is non-durable, so a broker
    restart drops its bindings; the engine rebinding the stream itself means its results are
    routable as soon as it is connected, whether or not any user_interface is.
    """
    await session.declare_queue(settings.results_stream, {"x-queue-type": "stream"})
    await session.bind(settings.results_stream, EXCHANGE, JOB_KEY)
    await session.bind(settings.results_stream, EXCHANGE, RESULT_KEY)


async def declare_dead_letters(session: Session, settings: ServiceSettings) -> None:
    """The dead-letter exchange and the queue where refused jobs wait for an operator."""
    await session.declare_exchange(settings.dead_letter_exchange, "fanout", durable=True)
    await session.declare_queue(settings.dead_letter_queue, {"x-queue-type": settings.jobs_queue_type})
    await session.bind(settings.dead_letter_queue, settings.dead_letter_exchange, "")
