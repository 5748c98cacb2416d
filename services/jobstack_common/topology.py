"""Exchanges and queues, declared by the services on every (re)connect so they survive broker restarts."""

from __future__ import annotations

from .amqp import Session
from .config import ServiceSettings
from .protocol import EXCHANGE, JOB_KEY


async def declare_jobs(session: Session, settings: ServiceSettings) -> None:
    """job-exchange as the original services declare it, and the shared durable jobs queue.

    Both sides declare the queue, so jobs published before any engine starts are kept. Only
    `x-queue-type` is set: limits (delivery-limit, dead-letter-exchange) belong in a policy, so
    that changing them never makes a declaration conflict with the existing queue.
    """
    # Direct and non-durable, exactly as the original services declare it: RabbitMQ refuses a
    # second declaration with other flags, and old and new services must share the exchange.
    await session.declare_exchange(EXCHANGE, "direct", durable=False)
    await session.declare_queue(settings.jobs_queue, {"x-queue-type": settings.jobs_queue_type})
    await session.bind(settings.jobs_queue, EXCHANGE, JOB_KEY)


async def declare_dead_letters(session: Session, settings: ServiceSettings) -> None:
    """The dead-letter exchange and the queue where refused jobs wait for an operator."""
    await session.declare_exchange(settings.dead_letter_exchange, "fanout", durable=True)
    await session.declare_queue(settings.dead_letter_queue, {"x-queue-type": settings.jobs_queue_type})
    await session.bind(settings.dead_letter_queue, settings.dead_letter_exchange, "")
