"""jobstack user_interface: the HTTP API that submits jobs and answers for any job from the results stream.

Every replica consumes the durable results stream (every result, and a record of every accepted
job, see docs/architecture.md), so any replica answers GET /jobs/<id>, also after the replica that
accepted the job has gone, and results survive broker restarts and a replica reconnecting late.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import itertools
import logging
import math
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pika.spec import Basic, BasicProperties
from prometheus_client import Counter, Gauge, Histogram

from .amqp import BrokerUnavailable, PublishFailed, PublishFailure, Session
from .config import ConfigError, ServiceSettings, setting
from .http import json_error
from .openapi import openapi_document
from .page import EventHub, PageFiles
from .protocol import (
    EXCHANGE,
    JOB_KEY,
    RESULT_KEY,
    RESULT_STATUSES,
    STATUS_HEADER,
    InvalidJob,
    InvalidResult,
    loads,
    new_job,
    parse_result,
    printable,
    validate_payload,
)
from .results import MAX_RECORD_BYTES, Finished, JobView
from .service import BrokerService, run_service
from .topology import declare_jobs, declare_results_stream

log = logging.getLogger("jobstack.user_interface")

# How often a submit waiting for a reconnect looks again (it never waits past submit_timeout).
RECONNECT_POLL_SECONDS = 0.05
# Records this replica writes to the stream itself (default exchange, routing key = stream name).
ACCEPTED_TYPE = "jobstack.accepted"  # job ids (one per line) the broker confirmed: pending everywhere
MARKER_TYPE = "jobstack.marker"  # "I have read up to here": the replica is caught up
ACCEPTED_PER_RECORD = 1000
STREAM_PREFETCH = 1000


@dataclasses.dataclass(frozen=True)
class UserInterfaceSettings(ServiceSettings):
    http_port: int = setting(8080, minimum=0)
    mode: str = setting("api", choices=("api", "loop"))
    # loop mode, the original behaviour: a random integer job every loop_interval seconds.
    loop_interval: float = setting(1.0, minimum=0.01)
    loop_min_value: int = setting(1, minimum=0)
    loop_max_value: int = setting(5, minimum=0)
    result_timeout: float = setting(300.0, minimum=0)
    submit_timeout: float = setting(10.0, minimum=0.1)
    max_pending: int = setting(10000, minimum=1)
    results_kept: int = setting(10000, minimum=1)
    results_max_age_seconds: float = setting(3600.0, minimum=1)
    results_window_seconds: float = setting(600.0, minimum=0)
    retry_after_seconds: int = setting(5, minimum=1)
    http_max_body_bytes: int = setting(16384, minimum=64)
    # The page's live streams (GET /events) open at once; never more than half of
    # http_max_connections, so that API requests always find a connection.
    events_max_clients: int = setting(32, minimum=1)
    # Set while this region is drained for maintenance: POST /jobs answers 503 naming this URL
    # (the other region's UI), everything else keeps working.
    drain_to_url: str = ""

    def __post_init__(self) -> None:
        if self.loop_min_value > self.loop_max_value:
            raise ConfigError(
                f"loop_min_value ({self.loop_min_value}) must not be above loop_max_value ({self.loop_max_value})"
            )
        url = self.drain_to_url
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " for c in url):
                raise ConfigError(
                    "drain_to_url (USER_INTERFACE_DRAIN_TO_URL) must be an http:// or https:// URL of the UI "
                    "that takes this region's jobs, such as https://jobs.region-2.example.com/, "
                    f"got {printable(url, 200)!r}"
                )

    @property
    def events_clients_bound(self) -> int:
        return max(1, min(self.events_max_clients, self.http_max_connections // 2))


class SubmitFailure(enum.Enum):
    """Why a submit did not end in an accepted job."""

    BACKPRESSURE = "backpressure"  # max_pending jobs are pending
    QUEUE_FULL = "queue-full"  # the broker nacked the job (a full jobs queue with overflow reject-publish)
    NOT_CONNECTED = "not-connected"
    FLOW_CONTROL = "flow-control"
    TIMEOUT = "timeout"
    UNROUTABLE = "unroutable"
    SHUTTING_DOWN = "shutting-down"

    @property
    def http_status(self) -> int:
        """429 asks the client to slow down; 503 says the broker is not available now."""
        return 429 if self in (SubmitFailure.BACKPRESSURE, SubmitFailure.QUEUE_FULL) else 503


class SubmitError(Exception):
    def __init__(self, kind: SubmitFailure, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.job_id = job_id


class UserInterface(BrokerService[UserInterfaceSettings]):
    name = "user_interface"
    metrics_prefix = "jobstack_ui"

    def __init__(self, settings: UserInterfaceSettings) -> None:
        super().__init__(settings)
        self.http_max_body_bytes = settings.http_max_body_bytes
        self.view = JobView(settings.max_pending, settings.results_kept, settings.results_max_age_seconds)
        # Jobs this replica accepted and when: for the latency histogram and completion counts,
        # so that summing the replicas' counters counts each job once.
        self._mine: dict[str, float] = {}
        self._ack_pending: tuple[Session, int] | None = None
        self._last_offset: int | None = None
        self._marker = ""
        self._markers = itertools.count(1)
        self._caught_up = False  # in this session
        self._view_ready = False  # caught up at least once: GET may answer
        self._background: set[asyncio.Task[Any]] = set()
        # Job ids confirmed in this loop turn, written as one "accepted" record when the turn ends.
        self._accepted_batch: list[str] = []
        # Accepted jobs whose record the broker did not confirm (the connection dropped between the
        # job's confirm and its record): written again on the next connection, so that the other
        # replicas learn about them. Without it they would ignore the job's result (a job they do
        # not know) and answer 404 for a job this replica accepted.
        self._unrecorded: dict[str, None] = {}
        self._record_ids = itertools.count(1)
        self._submitted = Counter("jobstack_ui_jobs_submitted", "Jobs confirmed by the broker")
        self._completed = Counter(
            "jobstack_ui_jobs_completed", "Results of jobs this replica accepted, by status", ["status"]
        )
        self._latency = Histogram(
            "jobstack_ui_result_latency_seconds",
            "Time from submission to result, for jobs this replica accepted",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self._foreign = Counter("jobstack_ui_results_foreign", "Results read before (or without) their job's record")
        self._ignored = Counter(
            "jobstack_ui_records_ignored", "Stream records that are no job or result this service can read"
        )
        Gauge(
            "jobstack_ui_jobs_pending",
            "Pending jobs of all replicas, as this replica's view holds them; NaN until it has caught up",
        ).set_function(self._pending_gauge)
        Gauge("jobstack_ui_drained", "1 while this region is drained (drain_to_url is set)").set(
            1 if settings.drain_to_url else 0
        )
        for status in sorted(RESULT_STATUSES):
            self._completed.labels(status)
        self.page = PageFiles(
            settings.max_job_seconds, settings.loop_min_value, settings.loop_max_value, settings.drain_to_url
        )
        self.events = EventHub(
            self.view,
            settings.events_clients_bound,
            self._jobs_queue_depth,
            self.pending_count,
            settings.retry_after_seconds,
        )

    # -- the results stream ------------------------------------------------------------------------
    async def on_connected(self, session: Session) -> None:
        settings = self.settings
        await declare_jobs(session, settings)
        await declare_results_stream(session, settings)
        self._caught_up = False
        self._marker = f"{settings.instance_id}-{next(self._markers)}-{time.time_ns()}"
        session.on_consumer_cancelled = lambda _tag: self._results_consumer_cancelled(session)

        def on_record(_channel: Any, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
            # pika runs this inside its frame handling: nothing may escape, whatever the record holds.
            try:
                self._read_record(method.routing_key, properties, body)
            except Exception:
                self._ignored.inc()
                log.warning("ignoring a stream record that cannot be read", exc_info=True)
            self._ack_soon(session, method.delivery_tag)

        await session.consume(
            settings.results_stream, on_record, prefetch=STREAM_PREFETCH, arguments={"x-stream-offset": self._offset()}
        )
        # Reading our own marker back means every record written before it has been read.
        marker = BasicProperties(type=MARKER_TYPE, message_id=self._marker, delivery_mode=2)
        await session.publish_confirmed("", settings.results_stream, b"", marker, settings.submit_timeout)
        unrecorded, self._unrecorded = list(self._unrecorded), {}
        for start in range(0, len(unrecorded), ACCEPTED_PER_RECORD):
            self._write_accepted(session, unrecorded[start : start + ACCEPTED_PER_RECORD])

    def _results_consumer_cancelled(self, session: Session) -> None:
        # The stream was deleted (its offsets start again from 0) or lost its leader: read it
        # again from the time window rather than from an offset that may not exist any more.
        self._last_offset = None
        session.abort("the broker cancelled the results consumer")

    def _offset(self) -> int | datetime | str:
        """Where to (re)start reading: after the last record read, else a time window back."""
        if self._last_offset is not None:
            return self._last_offset + 1
        if self.settings.results_window_seconds <= 0:
            return "next"
        return datetime.now(UTC) - timedelta(seconds=self.settings.results_window_seconds)

    def _read_record(self, routing_key: str, properties: BasicProperties, body: bytes) -> None:
        """Route a record on its routing key and properties; bodies are parsed only when they must be."""
        headers = properties.headers
        if headers:
            offset = headers.get("x-stream-offset")
            if isinstance(offset, int):
                self._last_offset = offset
        now = time.monotonic()
        if routing_key == RESULT_KEY:
            self._read_result(properties, headers, body, now)
        elif properties.type == ACCEPTED_TYPE and len(body) <= MAX_RECORD_BYTES:
            for line in body.split(b"\n"):
                if len(line) == 36:
                    self.view.job_seen(line.decode("ascii", "replace"), now)
        elif properties.type == MARKER_TYPE and properties.message_id == self._marker:
            self._caught_up = self._view_ready = True
            log.info("caught up with the results stream", extra={"pending": len(self.view.pending)})
        elif properties.type != MARKER_TYPE:
            self._ignored.inc()

    def _read_result(
        self, properties: BasicProperties, headers: dict[str, Any] | None, body: bytes, now: float
    ) -> None:
        job_id = properties.correlation_id
        status = headers.get(STATUS_HEADER) if headers else None
        if len(body) > MAX_RECORD_BYTES:
            self._ignored.inc()
            return
        if status not in RESULT_STATUSES or not job_id or len(job_id) != 36:
            # Not from this project's engine: read the body itself, which must be a result.
            try:
                document = parse_result(body, MAX_RECORD_BYTES)
            except InvalidResult:
                self._ignored.inc()
                return
            job_id, status = document["job_id"], document["status"]
        assert isinstance(status, str) and job_id is not None
        if self.view.result_seen(job_id, status, body, now):
            self._count_mine(job_id, status, now)
        elif job_id not in self.view.finished:
            self._foreign.inc()

    def _ack_soon(self, session: Session, delivery_tag: int) -> None:
        """Acknowledge records in batches: one multiple-ack per loop iteration."""
        first = self._ack_pending is None
        self._ack_pending = (session, delivery_tag)
        if first:
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        if self._ack_pending is not None:
            session, tag = self._ack_pending
            self._ack_pending = None
            session.ack(tag, multiple=True)

    def not_ready_reason(self) -> str | None:
        return None if self._caught_up else "catching up with the results stream"

    def pending_count(self) -> int | None:
        """Every replica's pending jobs, as this replica sees them; None while its view is stale.

        The dashboard takes the max over a region's replicas as the region's count. A replica that is
        disconnected, or still reading the stream after a (re)connect, holds a count that is too
        high (results it has not read) or too low (jobs it has not read), so it reports none.
        """
        return len(self.view.pending) if self.ready else None

    def _pending_gauge(self) -> float:
        count = self.pending_count()
        return math.nan if count is None else count

    async def _jobs_queue_depth(self) -> tuple[int, int] | None:
        """(ready, consumers) of the jobs queue for the page; None when not connected."""
        session = self.session
        if session is None or not self.connected:
            return None
        try:
            return await session.queue_depth(self.settings.jobs_queue)
        except BrokerUnavailable:
            return None

    # -- submitting ---------------------------------------------------------------------------------
    async def submit(self, payload: dict[str, Any]) -> str:
        """Publish a job and return its id once the broker has confirmed it, within submit_timeout.

        Raises SubmitError; its kind says whether to retry later (429) or that the broker is not
        available (503).
        """
        if self.view.full:
            raise SubmitError(
                SubmitFailure.BACKPRESSURE,
                f"{len(self.view.pending)} jobs are pending, the most this service accepts; retry later",
            )
        job_id, body = new_job(payload)
        properties = BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=job_id,
            correlation_id=job_id,
            app_id="jobstack-user-interface",
        )
        deadline = time.monotonic() + self.settings.submit_timeout
        while True:
            session = await self._session_before(deadline)
            future = session.publish(EXCHANGE, JOB_KEY, body, properties)
            try:
                # Shielded: a late confirm still records the job as accepted (_late_answer).
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                    await asyncio.shield(future)
            except TimeoutError:
                # The broker may still take it; if it does, record it as accepted then.
                future.add_done_callback(functools.partial(self._late_answer, job_id))
                session.report_timeout()
                kind = SubmitFailure.FLOW_CONTROL if session.blocked_reason else SubmitFailure.TIMEOUT
                raise SubmitError(
                    kind,
                    f"job {job_id} was not confirmed within submit_timeout: "
                    f"{session.timeout_detail(self.settings.submit_timeout)}; it may still run",
                    job_id,
                ) from None
            except PublishFailed as failure:
                if failure.kind is PublishFailure.CONNECTION_LOST:
                    continue  # publish again once reconnected (the engine side is at-least-once)
                if failure.kind is PublishFailure.NACKED:
                    raise SubmitError(
                        SubmitFailure.QUEUE_FULL,
                        "the broker refused the job: the jobs queue is full (or the broker is short of "
                        "resources); retry later",
                    ) from None
                raise SubmitError(
                    SubmitFailure.UNROUTABLE, f"the job is unroutable: no queue is bound for it ({failure.detail})"
                ) from None
            break
        self._accepted(job_id)
        self._submitted.inc()
        self._record_accepted(session, job_id)
        # The batch's record goes out in the next loop turn: answer 202 only once it is on the wire.
        await asyncio.sleep(0)
        await session.sent()
        return job_id

    def _accepted(self, job_id: str) -> None:
        now = time.monotonic()
        self._mine[job_id] = now
        if len(self._mine) > 2 * self.settings.max_pending:
            del self._mine[next(iter(self._mine))]  # jobs whose result never came
        early = self.view.job_seen(job_id, now)
        if early is not None:  # its result was read before the confirm was
            self._count_mine(job_id, early.status, now)

    def _count_mine(self, job_id: str, status: str, now: float) -> None:
        submitted = self._mine.pop(job_id, None)
        if submitted is not None:
            self._completed.labels(status).inc()
            self._latency.observe(now - submitted)

    def _record_accepted(self, session: Session, job_id: str) -> None:
        """Tell every replica, through the stream, that the job exists (batched, not waited for).

        Job ids confirmed in the same loop turn share one record written when the turn ends, so
        under load this costs one stream write per batch rather than one per job. submit() lets
        the record go out before it returns, but 202 does not wait for its confirm: waiting
        halves the throughput of a window of in-flight jobs (docs/performance.md). The job itself
        is already safe in the jobs queue; a record the broker did not confirm is written again on
        the next connection (_unrecorded).
        """
        if not self._accepted_batch or len(self._accepted_batch) >= ACCEPTED_PER_RECORD:
            self._accepted_batch = []
            asyncio.get_running_loop().call_soon(self._write_accepted, session, self._accepted_batch)
        self._accepted_batch.append(job_id)

    def _write_accepted(self, session: Session, batch: list[str]) -> None:
        if self._accepted_batch is batch:
            self._accepted_batch = []
        record = BasicProperties(
            type=ACCEPTED_TYPE,
            message_id=f"{self.settings.instance_id}-accepted-{next(self._record_ids)}",
            delivery_mode=2,
        )
        published = session.publish("", self.settings.results_stream, "\n".join(batch).encode(), record)
        published.add_done_callback(functools.partial(self._accepted_written, batch))

    def _accepted_written(self, batch: list[str], published: asyncio.Future[None]) -> None:
        error = None if published.cancelled() else published.exception()
        if isinstance(error, PublishFailed):  # counted by the session
            log.warning(
                "accepted jobs not recorded in the results stream; recording them again on the next connection",
                extra={"jobs": len(batch), "error": str(error)},
            )
            self._unrecorded.update(dict.fromkeys(batch))
            while len(self._unrecorded) > 2 * self.settings.max_pending:
                del self._unrecorded[next(iter(self._unrecorded))]  # bounded like the jobs it names

    async def _session_before(self, deadline: float) -> Session:
        """The open session, waiting for a reconnect until deadline; never spins on a closed one."""
        while not self.stopping:
            if self.connected and self.session is not None:
                return self.session
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SubmitError(
                    SubmitFailure.NOT_CONNECTED,
                    f"not connected to RabbitMQ at {self.settings.host}:{self.settings.port}",
                )
            await asyncio.sleep(min(remaining, RECONNECT_POLL_SECONDS))
        raise SubmitError(SubmitFailure.SHUTTING_DOWN, "the user_interface is shutting down")

    def _late_answer(self, job_id: str, future: asyncio.Future[None]) -> None:
        """A job confirmed after its submit gave up: it is accepted after all (the client has its id)."""
        if future.cancelled() or future.exception() is not None:
            return
        self._accepted(job_id)
        session = self.session
        if session is not None and session.is_open:
            self._record_accepted(session, job_id)

    # -- HTTP API -----------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/jobs", self._post_job),
            web.get("/jobs/{job_id}", self._get_job),
            web.get("/openapi.json", self._openapi),
            web.get("/", self.page.page),
            web.get("/static/{name}", self.page.static),
            # No HEAD: a stream has no end for a body-less answer to wait for.
            web.get("/events", self._events, allow_head=False),
        ]

    async def _events(self, request: web.Request) -> web.StreamResponse:
        guard = self.http_guard
        assert guard is not None  # the server that called us is the guarded one
        return await self.events.stream(request, guard.call_when_lost)

    def end_long_responses(self) -> None:
        self.events.close_all()

    async def _post_job(self, request: web.Request) -> web.StreamResponse:
        if self.settings.drain_to_url:
            return self._drained()
        content_type = request.content_type
        if content_type != "application/json" and not (
            content_type.startswith("application/") and content_type.endswith("+json")
        ):
            return json_error(415, f"Content-Type must be application/json, got {printable(content_type, 100)!r}")
        try:
            raw = await asyncio.wait_for(request.read(), timeout=self.settings.http_body_timeout)
        except TimeoutError:
            response = json_error(408, f"the body did not arrive within {self.settings.http_body_timeout:g} s")
            response.force_close()
            return response
        try:
            payload = loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return json_error(400, "body is not UTF-8")
        except ValueError as error:
            return json_error(400, f"body is not JSON: {error}")
        try:
            job_type, value = validate_payload(payload, self.settings.max_job_seconds, strict=True)
        except InvalidJob as refusal:
            return json_error(400, refusal.reason)
        try:
            job_id = await self.submit({"type": job_type, "value": value})
        except SubmitError as error:
            body: dict[str, Any] = {"error": str(error)}
            if error.job_id:
                body["job_id"] = error.job_id
            retry_after = 1 if error.kind is SubmitFailure.NOT_CONNECTED else self.settings.retry_after_seconds
            return web.json_response(body, status=error.kind.http_status, headers={"Retry-After": str(retry_after)})
        return web.json_response(
            {"job_id": job_id, "status": "pending"}, status=202, headers={"Location": f"/jobs/{job_id}"}
        )

    def _drained(self) -> web.Response:
        url = self.settings.drain_to_url
        body = {"error": f"this region is drained for maintenance: submit jobs to {url}", "submit_to": url}
        return web.json_response(body, status=503, headers={"Retry-After": str(self.settings.retry_after_seconds)})

    async def _get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if not self._view_ready:
            return json_error(503, "catching up with the results stream", {"Retry-After": "1"})
        found = self.view.lookup(job_id)
        if found is None:
            return json_error(404, "unknown job_id (never submitted, or its result has aged out)")
        if isinstance(found, Finished):
            try:
                result: dict[str, Any] | None = parse_result(found.body, MAX_RECORD_BYTES)
            except InvalidResult:
                result = None
            return web.json_response({"job_id": job_id, "status": found.status, "result": result})
        return web.json_response({"job_id": job_id, "status": "pending", "result": None})

    async def _openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.settings.max_job_seconds, self.settings.http_max_body_bytes))

    # -- the original behaviour as a mode -------------------------------------------------------------
    async def run(self) -> None:
        if self.settings.mode != "loop":
            await super().run()
            return
        generator = asyncio.ensure_future(self._loop_mode())
        try:
            await super().run()
        finally:
            generator.cancel()

    async def _loop_mode(self) -> None:
        """Like the original user_interface: a random integer job every loop_interval, results logged."""
        s = self.settings
        while not self.stopping:
            await asyncio.sleep(s.loop_interval)
            try:
                job_id = await self.submit(
                    {"type": "integer", "value": random.randint(s.loop_min_value, s.loop_max_value)}
                )
            except SubmitError as error:
                log.warning("loop job not accepted", extra={"error": str(error)})
                continue
            task = asyncio.ensure_future(self._log_result(job_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _log_result(self, job_id: str) -> None:
        try:
            finished = await asyncio.wait_for(self.view.wait(job_id), timeout=self.settings.result_timeout)
        except TimeoutError:
            self.view.forget_waiter(job_id)
            log.warning("loop job without result", extra={"job_id": job_id})
            return
        log.info("loop job result", extra={"job_id": job_id, "status": finished.status})


def main(default_config: Path, argv: list[str] | None = None) -> int:
    """The user_interface's process: `python services/user_interface/user_interface.py [--config PATH]`."""
    return run_service(UserInterface, UserInterfaceSettings, "user-interface", "USER_INTERFACE", default_config, argv)
