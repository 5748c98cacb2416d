"""A finished job's outcome survives broker restarts, a UI that reconnects late, and a UI replica restart."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from typing import Any

import pika
from jobstack.protocol import EXCHANGE, RESULT_KEY, STATUS_HEADER, ResultStatus, result_body, utc_now

from tools.rabbitmq_local import Broker

from .broker_admin import Admin
from .processes import Service, wait_for
from .test_pipeline import result_of, submit


def test_results_survive_a_broker_restart_while_the_ui_is_paused(
    own_broker: Broker, services: Callable[..., Service]
) -> None:
    url = own_broker.url()
    engine = services("engine", url, prefetch=10)
    ui = services("user_interface", url, heartbeat=2)
    job_ids = [submit(ui, 2) for _ in range(3)]
    for job_id in job_ids:
        engine.wait_log("job started", job_id=job_id)
    ui.signal(signal.SIGSTOP)  # the UI cannot reconnect before the engine does
    try:
        own_broker.restart()
        # The engine reconnects, gets the jobs again, runs them, and publishes the results while
        # the UI is still away: they must wait for it in the results stream.
        wait_for(
            lambda: engine.metric("jobstack_engine_jobs_total", 'status="succeeded"') >= 3,
            timeout=60,
            message="the engine to finish the jobs after the restart",
        )
    finally:
        ui.signal(signal.SIGCONT)
    assert [result_of(ui, job_id, timeout=60)["status"] for job_id in job_ids] == ["succeeded"] * 3
    assert engine.metric("jobstack_engine_dead_lettered_total", 'reason="unroutable"') == 0
    Admin(own_broker, "/").wait_queue("jobstack.jobs.dead", lambda q: q["messages"] == 0)


def test_a_new_replica_answers_for_jobs_of_a_replica_that_is_gone(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    services("engine", amqp_url)
    gone = services("user_interface", amqp_url, instance_id="ui-gone")
    finished = submit(gone, 0)
    result_of(gone, finished)
    running = submit(gone, 4)
    gone.kill()  # SIGKILL: nothing is handed over
    fresh = services("user_interface", amqp_url, instance_id="ui-fresh")
    status, body = fresh.get(f"/jobs/{finished}")
    assert (status, body["status"]) == (200, "succeeded"), body
    assert fresh.get(f"/jobs/{running}")[1]["status"] == "pending"
    assert result_of(fresh, running, timeout=30)["status"] == "succeeded"


def test_an_unroutable_result_is_retried_not_dead_lettered_at_once(
    amqp_url: str, services: Callable[..., Service], channel: Any, admin: Admin
) -> None:
    engine = services("engine", amqp_url, result_retry_seconds=60)
    ui = services("user_interface", amqp_url)
    channel.queue_unbind(queue="jobstack.results", exchange="job-exchange", routing_key="result")
    job_id = submit(ui, 0)
    engine.wait_log("result not accepted, retrying", job_id=job_id)
    channel.queue_bind(queue="jobstack.results", exchange="job-exchange", routing_key="result")
    assert result_of(ui, job_id, timeout=60)["status"] == "succeeded"
    assert engine.metric("jobstack_engine_publish_failures_total", 'reason="unroutable"') >= 1
    assert engine.metric("jobstack_engine_dead_lettered_total", 'reason="unroutable"') == 0
    admin.wait_queue("jobstack.jobs.dead", lambda q: q["messages"] == 0)


def test_a_result_unroutable_past_the_retry_bound_is_dead_lettered(
    amqp_url: str, services: Callable[..., Service], channel: Any, admin: Admin
) -> None:
    engine = services("engine", amqp_url, result_retry_seconds=1)
    ui = services("user_interface", amqp_url)
    channel.queue_unbind(queue="jobstack.results", exchange="job-exchange", routing_key="result")
    submit(ui, 0)
    wait_for(
        lambda: engine.metric("jobstack_engine_dead_lettered_total", 'reason="unroutable"') == 1,
        message="the job to be dead-lettered as unroutable",
    )
    admin.wait_queue("jobstack.jobs.dead", lambda q: q["messages"] == 1)
    admin.wait_queue("jobstack.jobs", lambda q: q["messages_unacknowledged"] == 0 and q["messages"] == 0)


def test_the_results_stream_is_declared_bare_and_takes_its_retention_from_a_policy(
    amqp_url: str, services: Callable[..., Service], admin: Admin
) -> None:
    services("engine", amqp_url)
    services("user_interface", amqp_url)
    retention = {"max-age": "1h", "max-length-bytes": 1_000_000_000}
    admin.set_policy("jobstack-results", r"^jobstack\.results$", retention)
    stream = admin.wait_queue("jobstack.results", lambda q: q.get("effective_policy_definition") == retention)
    # Only the type is declared: a limit in an x- argument would conflict with a changed policy.
    assert stream["arguments"] == {"x-queue-type": "stream"} and stream["durable"] is True
    bindings = admin.api("GET", f"/api/exchanges/{admin.vhost}/job-exchange/bindings/source")
    assert {b["routing_key"] for b in bindings if b["destination"] == "jobstack.results"} == {"result"}


def test_a_result_whose_accepted_record_was_lost_is_answered_by_every_replica(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    # The submitting replica lost its connection after the job's confirm and before its batched
    # accepted record went out (seen in the chaos test): the other replicas read the job's result
    # without ever reading the job. The result alone must be the answer, not a 404.
    ui = services("user_interface", amqp_url)
    job_id = str(uuid.uuid4())
    body = result_body(job_id, ResultStatus.SUCCEEDED, "engine-elsewhere", utc_now())
    properties = pika.BasicProperties(
        correlation_id=job_id, headers={STATUS_HEADER: "succeeded"}, delivery_mode=2, content_type="application/json"
    )
    channel.confirm_delivery()
    channel.basic_publish(EXCHANGE, RESULT_KEY, body, properties, mandatory=True)

    def answered() -> dict[str, Any] | None:
        status, answer = ui.get(f"/jobs/{job_id}")
        return answer if status == 200 else None

    answer = wait_for(answered, timeout=30, message="the replica to answer with the result it read")
    assert (answer["status"], answer["result"]["engine"]) == ("succeeded", "engine-elsewhere"), answer
