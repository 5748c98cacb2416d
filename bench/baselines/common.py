"""What the baseline stacks share: the job and its result, the producer's bookkeeping, the process plumbing.

Each baseline module runs as a process of its own, so that its CPU time is counted apart:

    BENCH_AMQP_URL=amqp://... python -m bench.baselines.<module> drive --n N --window W

The driver starts the stack's worker process, waits until it consumes the jobs queue, then keeps at
most W jobs in flight (submitted, result not yet back) until all N results are back, stops the worker
and prints one JSON line: {"n", "completed", "failed", "seconds", "jobs_per_s", "p50_ms", "p99_ms"}.
Latency is from just before the job is published to the moment its result reaches the producer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from bench.measure import percentile_ms

URL_VARIABLE = "BENCH_AMQP_URL"
# The same trivial job as jobstack's benchmark: an integer job of 0 seconds.
JOB_PAYLOAD = {"type": "integer", "value": 0}
QUORUM = {"x-queue-type": "quorum"}


def amqp_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    if not url:
        raise SystemExit(f"bench: set {URL_VARIABLE} to the broker's amqp:// URL")
    return url


def new_job() -> tuple[str, bytes]:
    """A job in jobstack's wire format: {"job_id", "job_payload": {"type": "integer", "value": 0}}."""
    job_id = str(uuid.uuid4())
    return job_id, json.dumps({"job_id": job_id, "job_payload": JOB_PAYLOAD}).encode()


def read_job(body: bytes) -> tuple[str, int]:
    """job_id and the seconds to run, from a job body."""
    job = json.loads(body)
    return job["job_id"], int(job["job_payload"]["value"])


def result_body(job_id: str) -> bytes:
    return json.dumps({"job_id": job_id, "status": "succeeded"}).encode()


def run_job(body: bytes) -> tuple[str, bytes]:
    """Run a job in a blocking worker: sleep its value (0 here) and return job_id and the result body."""
    job_id, seconds = read_job(body)
    time.sleep(seconds)
    return job_id, result_body(job_id)


def succeeded(body: bytes) -> tuple[str, bool]:
    result = json.loads(body)
    return result["job_id"], result.get("status") == "succeeded"


class InFlight:
    """Closed-loop bookkeeping: at most `window` jobs submitted and not answered, until `n` are answered."""

    def __init__(self, n: int, window: int) -> None:
        self.n, self.window = n, window
        self.started: dict[str, float] = {}
        self.latencies: list[float] = []
        self.failed = 0
        self.submitted = 0
        self.first_submit: float | None = None
        self.last_answer: float | None = None

    def wants_more(self) -> bool:
        return self.submitted < self.n and len(self.started) < self.window

    @property
    def done(self) -> bool:
        return len(self.latencies) + self.failed >= self.n

    def submitting(self, job_id: str) -> None:
        now = time.monotonic()
        if self.first_submit is None:
            self.first_submit = now
        self.started[job_id] = now
        self.submitted += 1

    def answered(self, job_id: str, ok: bool = True) -> None:
        """Record a result; one for a job not in flight (a duplicate) is ignored."""
        started = self.started.pop(job_id, None)
        if started is None:
            return
        self.last_answer = time.monotonic()
        if ok:
            self.latencies.append(self.last_answer - started)
        else:
            self.failed += 1

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        seconds = (self.last_answer or 0.0) - (self.first_submit or 0.0)
        return {
            "n": self.n,
            "completed": len(ordered),
            "failed": self.failed,
            "seconds": round(seconds, 3),
            "jobs_per_s": round(len(ordered) / seconds, 1) if seconds > 0 else None,
            "p50_ms": percentile_ms(ordered, 0.50),
            "p99_ms": percentile_ms(ordered, 0.99),
        }


def deadline_for(n: int) -> float:
    """Generous: a stalled run ends with an error instead of hanging the benchmark."""
    return time.monotonic() + 60 + n / 20


def start_worker(argv: list[str], **environment: str) -> subprocess.Popen[bytes]:
    """The stack's worker as a child process; its output goes to stderr so stdout stays one JSON line."""
    return subprocess.Popen(argv, env={**os.environ, **environment}, stdout=sys.stderr)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (every framework's warm shutdown), then wait so its CPU time is counted."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def wait_for_consumer(url: str, queue: str, worker: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the worker consumes `queue`, so that no job waits for a worker that is still starting."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise SystemExit(f"bench: the worker exited with {worker.returncode} before consuming {queue}")
            channel = connection.channel()
            try:
                if channel.queue_declare(queue, passive=True).method.consumer_count > 0:
                    return
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass  # not declared yet: the worker declares it when it starts
            time.sleep(0.1)
        raise SystemExit(f"bench: no consumer on {queue} within {timeout} s")
    finally:
        connection.close()


def with_worker(
    stack: str, worker: subprocess.Popen[bytes], url: str, jobs: str, produce: Callable[[], InFlight]
) -> dict[str, Any]:
    """Once `worker` consumes `jobs`, run `produce`; stop the worker whatever happens; the run's figures."""
    try:
        wait_for_consumer(url, jobs, worker)
        flight = produce()
    finally:
        stop_worker(worker)
    return check_finished(flight, stack)


def module_worker(module: str, window: int) -> subprocess.Popen[bytes]:
    """`python -m <module> work --window W`: the worker of a baseline that has its own `work`."""
    return start_worker([sys.executable, "-m", module, "work", "--window", str(window)])


def run_blocking_producer(
    url: str, replies: str, n: int, window: int, submit: Callable[[BlockingChannel, bytes], None]
) -> InFlight:
    """Keep `window` jobs in flight with `submit(channel, body)`; read results from `replies` with pika.

    The channel is in confirm mode, so a submit that publishes on it waits for the broker's confirm.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(replies, durable=True)
    flight = InFlight(n, window)

    def on_result(channel: BlockingChannel, method: Basic.Deliver, _: BasicProperties, body: bytes) -> None:
        job_id, ok = succeeded(body)
        flight.answered(job_id, ok)
        channel.basic_ack(method.delivery_tag)

    channel.basic_consume(replies, on_result)
    deadline = deadline_for(n)
    while not flight.done and time.monotonic() < deadline:
        while flight.wants_more():
            job_id, body = new_job()
            flight.submitting(job_id)
            submit(channel, body)
        connection.process_data_events(time_limit=0.05)
    connection.close()
    return flight


def check_finished(flight: InFlight, stack: str) -> dict[str, Any]:
    summary = flight.summary()
    if not flight.done:
        raise SystemExit(
            f"bench {stack}: only {summary['completed']} of {flight.n} results came back before the deadline"
        )
    return summary


def main(stack: str, drive: Callable[[str, int, int], dict[str, Any]], work: Callable[[str, int], None]) -> None:
    """`drive --n N --window W` prints the run's JSON line; `work --window W` is the worker process."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.baselines.{stack}")
    parser.add_argument("role", choices=("drive", "work"))
    parser.add_argument("--n", type=int, default=1000, help="jobs to run (drive)")
    parser.add_argument("--window", type=int, default=200, help="jobs in flight; also the worker's prefetch")
    arguments = parser.parse_args()
    if arguments.n < 1 or arguments.window < 1:
        parser.error("--n and --window must be at least 1")
    url = amqp_url()
    if arguments.role == "work":
        work(url, arguments.window)
        return
    print(json.dumps(drive(url, arguments.n, arguments.window)), flush=True)
