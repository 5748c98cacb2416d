"""jobstack engine: takes jobs from the shared queue, runs them, publishes a result, then acks.

python services/engine/engine.py [--config PATH]
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the shared package beside us

from jobstack_common.amqp import BrokerUnavailable, PublishFailed, Session, TopologyConflict
from jobstack_common.config import ServiceSettings, setting
from jobstack_common.protocol import (
    EXCHANGE,
    REASON_HEADER,
    RESULT_KEY,
    InvalidJob,
    Job,
    parse_job,
    result_body,
    utc_now,
)
from jobstack_common.service import BrokerService, run_service
from jobstack_common.topology import declare_dead_letters, declare_jobs
from pika.spec import Basic, BasicProperties
from prometheus_client import Counter, Histogram

log = logging.getLogger("jobstack.engine")


@dataclasses.dataclass(frozen=True)
class EngineSettings(ServiceSettings):
    http_port: int = setting(8081, minimum=0)
    prefetch: int = setting(10, minimum=1)
    max_body_bytes: int = setting(65536, minimum=64)
    max_deliveries: int = setting(5, minimum=1)


def delivery_attempt(headers: dict[str, Any] | None, redelivered: bool) -> int:
    """Which delivery of this message this is, from the quorum queue's counters (1 = first)."""
    headers = headers or {}
    counts = [headers.get("x-delivery-count"), headers.get("x-acquired-count")]
    known = [count for count in counts if isinstance(count, int)]
    if known:
        return max(known) + 1
    return 2 if redelivered else 1


def job_id_of(body: bytes) -> str | None:
    """The job_id of a body if one can be read at all (for a rejected result)."""
    try:
        job_id = json.loads(body).get("job_id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) and job_id else None


class Engine(BrokerService[EngineSettings]):
    name = "engine"
    metrics_prefix = "jobstack_engine"

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._consumer_tag: str | None = None
        self._message_ids = itertools.count(1)
        self._jobs = Counter("jobstack_engine_jobs", "Jobs handled, by result status", ["status"])
        self._duration = Histogram(
            "jobstack_engine_job_duration_seconds",
            "Time from delivery to acknowledgement",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self._redeliveries = Counter("jobstack_engine_redeliveries", "Deliveries flagged as redelivered")
        self._dead_lettered = Counter("jobstack_engine_dead_lettered", "Jobs sent to the dead-letter queue", ["reason"])

    async def on_connected(self, session: Session) -> None:
        await declare_jobs(session, self.settings)
        await declare_dead_letters(session, self.settings)

        def on_message(_channel: Any, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
            task = asyncio.ensure_future(self._handle(session, method, properties, body))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        self._consumer_tag = await session.consume(self.settings.jobs_queue, on_message, self.settings.prefetch)
        log.info("consuming", extra={"queue": self.settings.jobs_queue, "prefetch": self.settings.prefetch})

    async def on_disconnected(self) -> None:
        # Their delivery tags died with the channel: the broker gives those jobs to another engine.
        if self._in_flight:
            log.warning("abandoning jobs of the lost connection", extra={"jobs": len(self._in_flight)})
        for task in list(self._in_flight):
            task.cancel()

    async def drain(self, session: Session) -> None:
        if self._consumer_tag is not None:
            # The connection may be going away anyway; then there is nothing to cancel.
            with contextlib.suppress(BrokerUnavailable, TopologyConflict):
                await session.cancel(self._consumer_tag)
        if self._in_flight:
            log.info("finishing jobs in hand", extra={"jobs": len(self._in_flight)})
            _done, unfinished = await asyncio.wait(set(self._in_flight), timeout=self.settings.shutdown_grace_seconds)
            if unfinished:
                # Not acked: closing the channel hands them back to the queue for another engine.
                log.warning("grace period over, returning jobs to the queue", extra={"jobs": len(unfinished)})
                for task in unfinished:
                    task.cancel()

    # -- one job -----------------------------------------------------------------------------------
    async def _handle(self, session: Session, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        started_at, started = utc_now(), time.perf_counter()
        if method.redelivered:
            self._redeliveries.inc()
        attempt = delivery_attempt(properties.headers, method.redelivered)
        try:
            if attempt > self.settings.max_deliveries:
                raise InvalidJob(
                    f"delivery-limit: delivered {attempt} times, more than max_deliveries "
                    f"{self.settings.max_deliveries}; the job may crash engines",
                    job_id_of(body),
                )
            job = parse_job(body, self.settings.max_job_seconds, self.settings.max_body_bytes)
        except InvalidJob as refusal:
            await self._refuse(session, method, properties, body, refusal, started_at)
            return
        log.debug("job started", extra={"job_id": job.job_id, "value": job.value, "attempt": attempt})
        try:
            await self._run(job)
            status, error = "succeeded", None
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # noqa: BLE001 - a failing job is reported, not fatal
            status, error = "failed", f"{type(failure).__name__}: {failure}"
        try:
            await self._publish_result(session, job.job_id, status, started_at, properties, error)
        except PublishFailed as failure:
            if not failure.reason.startswith("unroutable"):
                return  # connection lost before the confirm: not acked, so it will be redelivered
            # Nobody can receive the result: keep the job for an operator rather than lose it.
            await self._dead_letter(session, properties, body, f"result unroutable: {failure.reason}", "unroutable")
        if session.ack(method.delivery_tag):
            self._jobs.labels(status).inc()
            self._duration.observe(time.perf_counter() - started)
            log.info("job done", extra={"job_id": job.job_id, "status": status, "value": job.value})

    async def _run(self, job: Job) -> None:
        """An integer job sleeps `value` seconds without blocking the connection's I/O."""
        await asyncio.sleep(job.value)

    async def _refuse(
        self,
        session: Session,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
        refusal: InvalidJob,
        started_at: str,
    ) -> None:
        kind = "delivery-limit" if refusal.reason.startswith("delivery-limit") else "invalid"
        log.warning("job refused", extra={"job_id": refusal.job_id, "reason": refusal.reason})
        try:
            await self._dead_letter(session, properties, body, refusal.reason, kind)
            if refusal.job_id:
                try:
                    await self._publish_result(
                        session, refusal.job_id, "rejected", started_at, properties, refusal.reason
                    )
                except PublishFailed as failure:
                    if not failure.reason.startswith("unroutable"):
                        raise
        except PublishFailed:
            return  # connection lost: redelivered and refused again later
        if session.ack(method.delivery_tag):
            self._jobs.labels("rejected").inc()

    def _properties(self, **fields: Any) -> BasicProperties:
        return BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=f"{self.settings.instance_id}-{next(self._message_ids)}",
            app_id="jobstack-engine",
            **fields,
        )

    async def _publish_result(
        self,
        session: Session,
        job_id: str,
        status: str,
        started_at: str,
        job_properties: BasicProperties,
        error: str | None,
    ) -> None:
        # One publish reaches both audiences: queues bound to `result` (the original protocol)
        # and, through the CC header, the submitting UI's reply queue, bound under its own name.
        headers = {"CC": [job_properties.reply_to]} if job_properties.reply_to else None
        body = result_body(job_id, status, self.settings.instance_id, started_at, error)
        await session.publish(EXCHANGE, RESULT_KEY, body, self._properties(correlation_id=job_id, headers=headers))

    async def _dead_letter(
        self, session: Session, properties: BasicProperties, body: bytes, reason: str, kind: str
    ) -> None:
        headers = dict(properties.headers or {})
        headers.update({REASON_HEADER: reason, "x-jobstack-engine": self.settings.instance_id})
        dead = self._properties(headers=headers, correlation_id=properties.correlation_id)
        await session.publish(self.settings.dead_letter_exchange, self.settings.jobs_queue, body, dead)
        self._dead_lettered.labels(kind).inc()


def main() -> int:
    here = Path(__file__).resolve().parent
    return run_service(Engine, EngineSettings, "engine", "ENGINE", here / "config.ini")


if __name__ == "__main__":
    sys.exit(main())
