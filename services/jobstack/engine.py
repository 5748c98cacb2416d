"""jobstack engine: takes jobs from the shared queue, runs them, publishes a result, then acks.

Every delivery ends in exactly one of: ack (result or dead letter confirmed), reject without
requeue (the dead-letter publish itself failed: the queue's own dead-letter policy takes over),
requeue (a result that could not be published in time: the job runs again, bounded by the
delivery limit), or nothing because the connection is gone (the broker requeues it). No body
and no broker answer leaves a delivery in hand for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import re
import time
from pathlib import Path
from typing import Any

from pika.data import encode_table
from pika.spec import Basic, BasicProperties
from prometheus_client import Counter, Gauge, Histogram

from .amqp import BrokerUnavailable, PublishFailed, PublishFailure, Session, TopologyConflict
from .config import ServiceSettings, setting
from .protocol import (
    EXCHANGE,
    REASON_HEADER,
    RESULT_KEY,
    STATUS_HEADER,
    InvalidJob,
    Job,
    RefusalKind,
    ResultStatus,
    job_id_of,
    parse_job,
    printable,
    result_body,
    utc_now,
)
from .service import BrokerService, backoff_delay, run_service
from .topology import declare_dead_letters, declare_jobs, declare_results_stream

log = logging.getLogger("jobstack.engine")

# The original headers of a refused job are kept in its dead letter unless they are this large:
# the dead letter adds our own headers, and the whole header frame must stay below frame_max.
MAX_KEPT_HEADER_BYTES = 32 * 1024


@dataclasses.dataclass(frozen=True)
class EngineSettings(ServiceSettings):
    http_port: int = setting(8081, minimum=0)
    prefetch: int = setting(10, minimum=1)
    max_body_bytes: int = setting(65536, minimum=64)
    max_deliveries: int = setting(5, minimum=1)
    # Results go to a submitter's reply queue (CC) only when reply_to has this prefix.
    reply_queue_prefix: str = "jobstack.replies."
    publish_timeout: float = setting(10.0, minimum=0.1)
    # How long an unroutable or refused result is retried before the job is given up on.
    result_retry_seconds: float = setting(30.0, minimum=0)
    # /readyz fails once a delivery is held longer than max_job_seconds plus this.
    stall_grace_seconds: float = setting(60.0, minimum=1)


def delivery_attempt(headers: dict[str, Any] | None, redelivered: bool) -> int:
    """Which delivery of this message this is, from the quorum queue's counters (1 = first)."""
    headers = headers or {}
    counts = [headers.get("x-delivery-count"), headers.get("x-acquired-count")]
    known = [count for count in counts if isinstance(count, int) and not isinstance(count, bool)]
    if known:
        return max(known) + 1
    return 2 if redelivered else 1


def bounded_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The original headers for a dead letter, or none when they could push the frame past frame_max."""
    if not headers:
        return {}
    try:
        pieces: list[bytes] = []
        size = encode_table(pieces, headers)
    except Exception:  # noqa: BLE001 - headers we cannot re-encode are dropped, not fatal
        return {"x-jobstack-headers-dropped": "not re-encodable"}
    if size > MAX_KEPT_HEADER_BYTES:
        return {"x-jobstack-headers-dropped": f"{size} bytes"}
    return dict(headers)


class Engine(BrokerService[EngineSettings]):
    name = "engine"
    metrics_prefix = "jobstack_engine"

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        # Each running delivery and when it arrived: what /readyz and the stall gauges look at.
        self._in_flight: dict[asyncio.Task[None], float] = {}
        self._consumer_tag: str | None = None
        self._consumer_cancelled = False
        self._message_ids = itertools.count(1)
        self._reply_to = re.compile(re.escape(settings.reply_queue_prefix) + r"[A-Za-z0-9._:@-]{1,200}")
        self._jobs = Counter("jobstack_engine_jobs", "Jobs handled, by result status", ["status"])
        self._duration = Histogram(
            "jobstack_engine_job_duration_seconds",
            "Time from delivery to acknowledgement",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self._redeliveries = Counter("jobstack_engine_redeliveries", "Deliveries flagged as redelivered")
        self._dead_lettered = Counter("jobstack_engine_dead_lettered", "Jobs sent to the dead-letter queue", ["reason"])
        self._given_back = Counter(
            "jobstack_engine_deliveries_given_back",
            "Deliveries rejected or requeued instead of acked, by what happened to them",
            ["action"],
        )
        Gauge("jobstack_engine_deliveries_in_hand", "Deliveries received and not yet settled").set_function(
            lambda: len(self._in_flight)
        )
        Gauge(
            "jobstack_engine_oldest_delivery_seconds", "Age of the oldest delivery in hand (0 when none)"
        ).set_function(self.oldest_delivery_seconds)
        for status in ResultStatus:
            self._jobs.labels(status.value)
        for kind in RefusalKind:
            self._dead_lettered.labels(kind.value)

    # -- broker ------------------------------------------------------------------------------------
    async def on_connected(self, session: Session) -> None:
        await declare_jobs(session, self.settings)
        await declare_results_stream(session, self.settings)
        await declare_dead_letters(session, self.settings)
        self._consumer_cancelled = False
        session.on_consumer_cancelled = lambda _tag: self._on_consumer_cancelled(session)

        def on_message(_channel: Any, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
            # pika runs this inside its frame handling: an exception here would close the connection.
            try:
                task = asyncio.ensure_future(self._handle(session, method, properties, body))
            except Exception:
                log.exception("cannot start handling a delivery; giving it back")
                session.reject(method.delivery_tag, requeue=True)
                return
            self._in_flight[task] = time.monotonic()
            task.add_done_callback(self._settled)

        self._consumer_tag = await session.consume(self.settings.jobs_queue, on_message, self.settings.prefetch)
        log.info("consuming", extra={"queue": self.settings.jobs_queue, "prefetch": self.settings.prefetch})

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery's task failed", extra={"error": repr(task.exception())})

    def _on_consumer_cancelled(self, session: Session) -> None:
        # The jobs queue was deleted (or lost its leader). Reconnecting redeclares it and
        # consumes again; until then /readyz says why this engine takes no work.
        self._consumer_cancelled = True
        session.abort("the broker cancelled the jobs consumer")

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

    # -- health ------------------------------------------------------------------------------------
    def oldest_delivery_seconds(self) -> float:
        return time.monotonic() - min(self._in_flight.values()) if self._in_flight else 0.0

    def not_ready_reason(self) -> str | None:
        if self._consumer_cancelled:
            return "the broker cancelled the jobs consumer"
        limit = self.settings.max_job_seconds + self.settings.stall_grace_seconds
        oldest = self.oldest_delivery_seconds()
        if oldest > limit:
            return f"a delivery has been in hand for {oldest:.0f} s, more than {limit:g} s"
        return None

    # -- one delivery --------------------------------------------------------------------------------
    async def _handle(self, session: Session, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        """The message boundary: whatever happens below, the delivery is settled or left to the channel."""
        try:
            await self._process(session, method, properties, body)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("unexpected error handling a delivery")
            refusal = InvalidJob(printable(f"engine error: {type(error).__name__}: {error}"))
            try:
                await self._refuse(session, method, properties, body, refusal, utc_now())
            except Exception:
                log.exception("cannot dead-letter after an engine error; rejecting the delivery")
                self._give_back(session, method, requeue=False)

    async def _process(self, session: Session, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        started_at, started = utc_now(), time.perf_counter()
        if method.redelivered:
            self._redeliveries.inc()
        attempt = delivery_attempt(properties.headers, method.redelivered)
        try:
            if attempt > self.settings.max_deliveries:
                raise InvalidJob(
                    f"delivery-limit: delivered {attempt} times, more than max_deliveries "
                    f"{self.settings.max_deliveries}; the job may crash engines",
                    job_id_of(body, self.settings.max_body_bytes),
                    RefusalKind.DELIVERY_LIMIT,
                )
            job = parse_job(body, self.settings.max_job_seconds, self.settings.max_body_bytes)
        except InvalidJob as refusal:
            await self._refuse(session, method, properties, body, refusal, started_at)
            return
        log.debug("job started", extra={"job_id": job.job_id, "value": job.value, "attempt": attempt})
        status, error = await self._run_bounded(job)
        settled = await self._deliver_result(session, method, properties, body, job.job_id, status, started_at, error)
        if settled:
            self._jobs.labels(status.value).inc()
            self._duration.observe(time.perf_counter() - started)
            log.info("job done", extra={"job_id": job.job_id, "status": status.value, "value": job.value})

    async def _run_bounded(self, job: Job) -> tuple[ResultStatus, str | None]:
        try:
            # asyncio.timeout, not wait_for: no extra task per job.
            async with asyncio.timeout(self.settings.max_job_seconds + 5):
                await self._run(job)
        except TimeoutError:
            return ResultStatus.FAILED, f"the job ran longer than {self.settings.max_job_seconds + 5} s"
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # noqa: BLE001 - a failing job is reported, not fatal
            return ResultStatus.FAILED, f"{type(failure).__name__}: {failure}"
        return ResultStatus.SUCCEEDED, None

    async def _run(self, job: Job) -> None:
        """An integer job sleeps `value` seconds without blocking the connection's I/O."""
        await asyncio.sleep(job.value)

    async def _deliver_result(
        self,
        session: Session,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
        job_id: str,
        status: ResultStatus,
        started_at: str,
        error: str | None,
    ) -> bool:
        """Publish the result, retrying a refusal for result_retry_seconds; True once the job is acked.

        Unroutable after the retries: dead-lettered (nobody can receive the result). Nacked or
        unconfirmed: requeued, so the job runs again later (bounded by max_deliveries).
        """
        result = result_body(job_id, status, self.settings.instance_id, started_at, error)
        deadline = time.monotonic() + self.settings.result_retry_seconds
        retry = 0
        while True:
            try:
                await self._publish_result(session, job_id, status, properties, result)
            except PublishFailed as failure:
                if failure.kind is PublishFailure.CONNECTION_LOST:
                    return False  # not acked: the broker redelivers the job
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    retry += 1
                    log.warning(
                        "result not accepted, retrying",
                        extra={"job_id": job_id, "reason": str(failure), "retry": retry},
                    )
                    await asyncio.sleep(min(backoff_delay(retry), remaining))
                    continue
                if failure.kind is PublishFailure.UNROUTABLE:
                    reason = f"result unroutable for {self.settings.result_retry_seconds:g} s: {failure.detail}"
                    refusal = InvalidJob(printable(reason), job_id, RefusalKind.UNROUTABLE)
                    await self._dead_letter_and_settle(session, method, properties, body, refusal)
                    return False
                log.error(
                    "result not accepted in time; requeueing the job", extra={"job_id": job_id, "reason": str(failure)}
                )
                self._give_back(session, method, requeue=True)
                return False
            return session.ack(method.delivery_tag)

    async def _publish_result(
        self, session: Session, job_id: str, status: ResultStatus, job_properties: BasicProperties, result: bytes
    ) -> None:
        # One publish reaches every audience: the results stream and any queue bound to `result`
        # (the original protocol), and through CC a reply queue of an older user_interface, but
        # only one of that naming scheme: any other reply_to (say "job") would be an injection.
        headers: dict[str, Any] = {STATUS_HEADER: status.value}
        reply_to = job_properties.reply_to
        if reply_to and self._reply_to.fullmatch(reply_to):
            headers["CC"] = [reply_to]
        await session.publish_confirmed(
            EXCHANGE,
            RESULT_KEY,
            result,
            self._properties(correlation_id=job_id, headers=headers),
            self.settings.publish_timeout,
        )

    async def _refuse(
        self,
        session: Session,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
        refusal: InvalidJob,
        started_at: str,
    ) -> None:
        log.warning("job refused", extra={"job_id": refusal.job_id, "reason": printable(refusal.reason, 300)})
        rejected: asyncio.Future[None] | None = None
        if refusal.job_id:
            # The submitter hears "rejected" instead of waiting forever (best effort).
            result = result_body(
                refusal.job_id, ResultStatus.REJECTED, self.settings.instance_id, started_at, refusal.reason
            )
            rejected = asyncio.ensure_future(
                self._publish_result(session, refusal.job_id, ResultStatus.REJECTED, properties, result)
            )
        await self._dead_letter_and_settle(session, method, properties, body, refusal)
        if rejected is not None:
            with contextlib.suppress(PublishFailed):  # counted by the session; best effort
                await rejected

    async def _dead_letter_and_settle(
        self, session: Session, method: Basic.Deliver, properties: BasicProperties, body: bytes, refusal: InvalidJob
    ) -> None:
        headers = bounded_headers(properties.headers)
        headers.update({REASON_HEADER: printable(refusal.reason), "x-jobstack-engine": self.settings.instance_id})
        dead = self._properties(headers=headers, correlation_id=properties.correlation_id)
        try:
            await session.publish_confirmed(
                self.settings.dead_letter_exchange, self.settings.jobs_queue, body, dead, self.settings.publish_timeout
            )
        except PublishFailed as failure:
            if failure.kind is PublishFailure.CONNECTION_LOST:
                return  # redelivered and refused again later
            # Our dead letter was refused: reject without requeue, so that the queue's own
            # dead-letter policy (if any) keeps the message, and this engine's slot is freed.
            log.error("dead-letter publish failed; rejecting the job", extra={"reason": str(failure)})
            self._give_back(session, method, requeue=False)
            return
        if session.ack(method.delivery_tag):
            self._dead_lettered.labels(refusal.kind.value).inc()
            self._jobs.labels(ResultStatus.REJECTED.value).inc()

    def _give_back(self, session: Session, method: Basic.Deliver, requeue: bool) -> None:
        if session.reject(method.delivery_tag, requeue=requeue):
            self._given_back.labels("requeued" if requeue else "rejected").inc()

    def _properties(self, **fields: Any) -> BasicProperties:
        return BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=f"{self.settings.instance_id}-{next(self._message_ids)}",
            app_id="jobstack-engine",
            **fields,
        )


def main(default_config: Path, argv: list[str] | None = None) -> int:
    """The engine's process: `python services/engine/engine.py [--config PATH]`."""
    return run_service(Engine, EngineSettings, "engine", "ENGINE", default_config, argv)
