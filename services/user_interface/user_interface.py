"""jobstack user_interface: submits jobs (HTTP API or the original loop) and routes results back.

python services/user_interface/user_interface.py [--config PATH]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the shared package beside us

from aiohttp import web
from jobstack_common.amqp import PublishFailed, Session
from jobstack_common.config import ServiceSettings, setting
from jobstack_common.protocol import EXCHANGE, JOB_KEY, InvalidJob, new_job, validate_payload
from jobstack_common.service import BrokerService, run_service
from jobstack_common.topology import declare_jobs
from pika.spec import Basic, BasicProperties
from prometheus_client import Counter, Histogram

log = logging.getLogger("jobstack.user_interface")

# How often a submit waiting for a reconnect looks again (it never waits past submit_timeout).
RECONNECT_POLL_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class UserInterfaceSettings(ServiceSettings):
    http_port: int = setting(8080, minimum=0)
    mode: str = setting("api", choices=("api", "loop"))
    loop_interval: float = setting(1.0, minimum=0)
    loop_min_value: int = setting(1, minimum=0)
    loop_max_value: int = setting(5, minimum=0)
    loop_count: int = setting(0, minimum=0)
    loop_concurrency: int = setting(1, minimum=1)
    loop_rate: float = setting(0.0, minimum=0)
    result_timeout: float = setting(300.0, minimum=0)
    submit_timeout: float = setting(10.0, minimum=0)
    reply_queue_prefix: str = "jobstack.replies."
    reply_queue_expires_seconds: int = setting(3600, minimum=1)
    results_kept: int = setting(10000, minimum=1)


class SubmitFailed(Exception):
    """The broker did not confirm the job within submit_timeout."""


@dataclasses.dataclass
class JobRecord:
    job_id: str
    submitted: float
    done: asyncio.Future[dict[str, Any]]


class UserInterface(BrokerService[UserInterfaceSettings]):
    name = "user_interface"
    metrics_prefix = "jobstack_ui"

    def __init__(self, settings: UserInterfaceSettings) -> None:
        super().__init__(settings)
        self.reply_queue = settings.reply_queue_prefix + settings.instance_id
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._ack_pending: tuple[Session, int] | None = None
        self._submitted = Counter("jobstack_ui_jobs_submitted", "Jobs confirmed by the broker")
        self._foreign = Counter(
            "jobstack_ui_results_foreign", "Results for jobs this instance does not know (another's, or expired)"
        )
        self._completed = Counter("jobstack_ui_jobs_completed", "Results received, by status", ["status"])
        self._latency = Histogram(
            "jobstack_ui_result_latency_seconds",
            "Time from submission to result",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )

    # -- broker -------------------------------------------------------------------------------------
    async def on_connected(self, session: Session) -> None:
        await declare_jobs(session, self.settings)
        # Durable, so results published while the broker restarts are kept; it expires once unused.
        expires_ms = self.settings.reply_queue_expires_seconds * 1000
        await session.declare_queue(self.reply_queue, {"x-queue-type": "classic", "x-expires": expires_ms})
        # Bound under its own name: results reach it through the CC header the engine sets.
        await session.bind(self.reply_queue, EXCHANGE, self.reply_queue)

        def on_result(_channel: Any, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
            self._record_result(properties, body)
            self._ack_soon(session, method.delivery_tag)

        await session.consume(self.reply_queue, on_result, prefetch=1000, exclusive=True)

    def _ack_soon(self, session: Session, delivery_tag: int) -> None:
        """Acknowledge results in batches: one multiple-ack per loop iteration."""
        first = self._ack_pending is None
        self._ack_pending = (session, delivery_tag)
        if first:
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        if self._ack_pending is not None:
            session, tag = self._ack_pending
            self._ack_pending = None
            session.ack(tag, multiple=True)

    def _record_result(self, properties: BasicProperties, body: bytes) -> None:
        try:
            result = json.loads(body)
            job_id = properties.correlation_id or result["job_id"]
        except (ValueError, KeyError, TypeError):
            log.warning(
                "ignoring a result that is not ours to read", extra={"body": body[:200].decode("utf-8", "replace")}
            )
            return
        record = self._jobs.get(job_id)
        if record is None:
            self._foreign.inc()
            return
        if record.done.done():
            return  # a duplicate: the engine side is at-least-once
        record.done.set_result(result)
        status = str(result.get("status", "unknown"))
        self._completed.labels(status).inc()
        self._latency.observe(time.monotonic() - record.submitted)
        log.info("job result", extra={"job_id": job_id, "status": status})

    # -- submitting ---------------------------------------------------------------------------------
    async def submit(self, payload: Any) -> JobRecord:
        """Publish a job and return once the broker has confirmed it (or raise SubmitFailed)."""
        validate_payload(payload, self.settings.max_job_seconds)
        job_id, body = new_job(payload)
        record = JobRecord(job_id, time.monotonic(), asyncio.get_running_loop().create_future())
        self._remember(record)
        properties = BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=job_id,
            correlation_id=job_id,
            reply_to=self.reply_queue,
            app_id="jobstack-user-interface",
        )
        deadline = time.monotonic() + self.settings.submit_timeout
        while True:
            session = await self._session_before(deadline)
            try:
                await session.publish(EXCHANGE, JOB_KEY, body, properties)
                break
            except PublishFailed as failure:
                if failure.reason != "connection lost":
                    self._jobs.pop(job_id, None)
                    raise SubmitFailed(f"the broker did not accept job {job_id}: {failure.reason}") from None
                # Not confirmed: publish again once reconnected (the engine side is at-least-once).
        self._submitted.inc()
        return record

    async def _session_before(self, deadline: float) -> Session:
        """The open session, waiting for a reconnect until deadline; never spins on a closed one."""
        while not self.stopping:
            # `ready` is derived from the session itself, which the base class only publishes once
            # on_connected has declared the topology and started consuming results.
            if self.ready and self.session is not None:
                return self.session
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SubmitFailed(f"not connected to RabbitMQ at {self.settings.host}:{self.settings.port}")
            await asyncio.sleep(min(remaining, RECONNECT_POLL_SECONDS))
        raise SubmitFailed("the user_interface is shutting down")

    def _remember(self, record: JobRecord) -> None:
        self._jobs[record.job_id] = record
        while len(self._jobs) > self.settings.results_kept:
            self._jobs.popitem(last=False)

    # -- HTTP API -----------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.post("/jobs", self._post_job), web.get("/jobs/{job_id}", self._get_job)]

    async def _post_job(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "body must be a JSON job_payload object"}, status=400)
        try:
            record = await self.submit(payload)
        except InvalidJob as refusal:
            return web.json_response({"error": refusal.reason}, status=400)
        except SubmitFailed as failure:
            return web.json_response({"error": str(failure)}, status=503)
        return web.json_response(
            {"job_id": record.job_id, "status": "pending"}, status=202, headers={"Location": f"/jobs/{record.job_id}"}
        )

    async def _get_job(self, request: web.Request) -> web.Response:
        record = self._jobs.get(request.match_info["job_id"])
        if record is None:
            return web.json_response({"error": "unknown job_id (not submitted here, or expired)"}, status=404)
        result = record.done.result() if record.done.done() else None
        status = result.get("status", "unknown") if result else "pending"
        return web.json_response({"job_id": record.job_id, "status": status, "result": result})

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
        """Submit random integer jobs and await their results, like the original user_interface."""
        s = self.settings
        latencies: list[float] = []
        failures = 0
        slots = asyncio.Semaphore(s.loop_concurrency)
        started = time.monotonic()

        async def one(index: int) -> None:
            nonlocal failures
            async with slots:
                try:
                    record = await self.submit(
                        {"type": "integer", "value": random.randint(s.loop_min_value, s.loop_max_value)}
                    )
                    await asyncio.wait_for(asyncio.shield(record.done), timeout=s.result_timeout)
                    latencies.append(time.monotonic() - record.submitted)
                except (TimeoutError, SubmitFailed) as error:
                    failures += 1
                    log.warning("loop job failed", extra={"index": index, "error": str(error) or "result timeout"})
                if s.loop_interval and not s.loop_rate:
                    await asyncio.sleep(s.loop_interval)

        tasks: set[asyncio.Task[None]] = set()
        index = 0
        while (s.loop_count == 0 or index < s.loop_count) and not self.stopping:
            if s.loop_rate:
                # Open loop: submit on a fixed schedule whatever the latency is.
                await asyncio.sleep(max(0.0, started + index / s.loop_rate - time.monotonic()))
            else:
                await slots.acquire()
                slots.release()
            task = asyncio.ensure_future(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            await asyncio.wait(set(tasks))
        elapsed = time.monotonic() - started
        print(json.dumps({"summary": summarize(latencies, failures, elapsed)}), flush=True)
        await self.shutdown()


def summarize(latencies: list[float], failures: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def percentile(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "completed": len(ordered),
        "failed": failures,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(len(ordered) / elapsed, 1) if elapsed else None,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }


def main() -> int:
    here = Path(__file__).resolve().parent
    return run_service(UserInterface, UserInterfaceSettings, "user-interface", "USER_INTERFACE", here / "config.ini")


if __name__ == "__main__":
    sys.exit(main())
