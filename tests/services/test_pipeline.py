"""Jobs flow through both services; work is shared; results reach the instance that asked."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pika

from tools.rabbitmq_local import Broker

from . import original_protocol as original
from .processes import Service, wait_for


def submit(ui: Service, value: int) -> str:
    status, body = ui.request("POST", "/jobs", {"type": "integer", "value": value})
    assert status == 202, body
    return body["job_id"]


def result_of(ui: Service, job_id: str, timeout: float = 30) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status, body = ui.get(f"/jobs/{job_id}")
        assert status == 200, body
        return body["result"] if body["status"] != "pending" else None

    return wait_for(finished, timeout=timeout, message=f"result of {job_id}")


def test_round_trip_through_both_services(amqp_url: str, services: Callable[..., Service]) -> None:
    engine = services("engine", amqp_url)
    ui = services("user_interface", amqp_url)
    job_id = submit(ui, 1)
    result = result_of(ui, job_id)
    assert result["job_id"] == job_id
    assert result["status"] == "succeeded"
    assert result["engine"] == engine.log_lines()[0]["instance"]
    assert result["started_at"] <= result["finished_at"]
    assert ui.metric("jobstack_ui_jobs_completed_total", 'status="succeeded"') == 1
    assert engine.metric("jobstack_engine_jobs_total", 'status="succeeded"') == 1


def test_api_refuses_invalid_payloads_with_400(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url)
    for payload, reason in [
        ({"type": "integer", "value": -1}, "between 0 and 60"),
        ({"type": "integer", "value": 61}, "between 0 and 60"),
        ({"type": "integer", "value": "3"}, "must be an integer"),
        ({"type": "float", "value": 3}, "must be one of integer"),
        ([1, 2], "must be an object"),
    ]:
        status, body = ui.request("POST", "/jobs", payload)
        assert (status, reason in body["error"]) == (400, True), body
    assert ui.get("/jobs/not-a-job")[0] == 404


def test_three_engines_share_the_work_and_each_job_runs_once(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    results_queue = original.bind_exclusive_queue(channel, "result")
    engines = [services("engine", amqp_url, prefetch=1, instance_id=f"engine-{n}") for n in range(3)]
    ui = services("user_interface", amqp_url)
    job_ids = [submit(ui, 1) for _ in range(9)]
    for job_id in job_ids:
        assert result_of(ui, job_id)["status"] == "succeeded"
    results = [
        json.loads(body) for _props, body in original.collect(channel, results_queue, len(job_ids) + 5, timeout=3)
    ]
    assert Counter(r["job_id"] for r in results) == Counter(job_ids)  # each job exactly once
    assert {r["engine"] for r in results} == {e.env["ENGINE_INSTANCE_ID"] for e in engines}  # all three worked
    processed = sum(e.metric("jobstack_engine_jobs_total", 'status="succeeded"') for e in engines)
    assert processed == len(job_ids)


def test_jobs_published_before_any_engine_starts_are_kept(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url)
    job_ids = [submit(ui, 0) for _ in range(5)]
    services("engine", amqp_url)
    assert [result_of(ui, job_id)["status"] for job_id in job_ids] == ["succeeded"] * 5


def test_any_replica_answers_for_any_job_pending_or_finished(amqp_url: str, services: Callable[..., Service]) -> None:
    first = services("user_interface", amqp_url, instance_id="ui-a")
    second = services("user_interface", amqp_url, instance_id="ui-b")
    pending = submit(first, 0)  # no engine yet: pending
    wait_for(lambda: second.get(f"/jobs/{pending}")[1].get("status") == "pending", message="pending on the other UI")
    services("engine", amqp_url, prefetch=20)
    mine = {ui: [submit(ui, 0) for _ in range(10)] for ui in (first, second)}
    every_job = [pending, *mine[first], *mine[second]]
    for ui in (first, second):
        assert all(result_of(ui, job_id)["status"] == "succeeded" for job_id in every_job)
    # Completions are counted by the replica that accepted the job, so the sum counts each once.
    assert first.metric("jobstack_ui_jobs_completed_total", 'status="succeeded"') == 11
    assert second.metric("jobstack_ui_jobs_completed_total", 'status="succeeded"') == 10


def test_unroutable_job_is_an_error_not_a_silent_loss(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    ui = services("user_interface", amqp_url)
    # Take away the only route for `job`: the publish must come back as an error.
    channel.queue_unbind(queue="jobstack.jobs", exchange="job-exchange", routing_key="job")
    status, body = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
    assert status == 503 and "unroutable" in body["error"], body
    assert ui.metric("jobstack_ui_jobs_submitted_total") == 0


def test_persistent_jobs_wait_in_a_durable_quorum_queue(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    ui = services("user_interface", amqp_url)
    submit(ui, 0)
    declared = channel.queue_declare(queue="jobstack.jobs", passive=True)
    assert declared.method.message_count == 1
    # Redeclaring with other flags fails: the queue really is durable and of type quorum.
    try:
        channel.queue_declare(queue="jobstack.jobs", durable=True, arguments={"x-queue-type": "classic"})
    except pika.exceptions.ChannelClosedByBroker as refused:
        assert refused.reply_code == 406
    else:
        raise AssertionError("a classic redeclaration of the quorum jobs queue was accepted")


def test_amqps_with_a_private_ca(own_broker: Broker, services: Callable[..., Service]) -> None:
    tls_url = f"amqps://guest:guest@localhost:{own_broker.tls_port}/"
    services("engine", tls_url, tls_ca_file=own_broker.ca_file)
    ui = services("user_interface", tls_url, tls_ca_file=own_broker.ca_file)
    assert result_of(ui, submit(ui, 0))["status"] == "succeeded"
    # Without the CA the certificate cannot be verified, and the service says so.
    refused = services("engine", tls_url, wait_ready=False, connect_timeout=1)
    assert refused.wait(timeout=30) == 1
    assert "cannot connect to RabbitMQ at localhost" in refused.log_text()
