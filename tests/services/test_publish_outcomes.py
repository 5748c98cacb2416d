"""Every publish outcome is handled: confirmed, nacked, unroutable, timed out, lost with the connection.

None leaves a delivery unacked; failures are counted by reason; a stall shows on /readyz.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import original_protocol as original
from .broker_admin import Admin
from .processes import Service, wait_for
from .test_pipeline import result_of, submit


def test_a_full_jobs_queue_answers_429_with_retry_after_and_loses_nothing(
    amqp_url: str, services: Callable[..., Service], admin: Admin
) -> None:
    # What the deployments' policy does to the jobs queue, at a size a test can fill.
    admin.set_policy("jobstack-jobs", r"^jobstack\.jobs$", {"max-length": 2, "overflow": "reject-publish"})
    ui = services("user_interface", amqp_url, retry_after_seconds=3)
    other = services("user_interface", amqp_url)
    accepted: list[str] = []
    for _ in range(6):  # a quorum queue refuses once it holds more than max-length
        status, headers, body = ui.raw_request("POST", "/jobs", json.dumps({"type": "integer", "value": 0}).encode())
        if status != 202:
            break
        accepted.append(body["job_id"])
    assert (status, headers.get("Retry-After")) == (429, "3"), (status, headers, body)
    assert "jobs queue is full" in body["error"] and 2 <= len(accepted) <= 3
    assert ui.metric("jobstack_ui_publish_failures_total", 'reason="nacked"') == 1
    assert ui.metric("jobstack_ui_jobs_submitted_total") == len(accepted)
    services("engine", amqp_url)
    for replica in (ui, other):
        assert [result_of(replica, job_id)["status"] for job_id in accepted] == ["succeeded"] * len(accepted)
    wait_for(lambda: other.metric("jobstack_ui_jobs_pending") == 0, message="no refused job left pending")


def test_a_nacked_result_is_retried_then_requeued_never_left_in_hand(
    amqp_url: str, services: Callable[..., Service], channel: Any, admin: Admin
) -> None:
    # An original client's result queue that refuses everything: every result publish is nacked.
    original.declare_exchange(channel)
    channel.queue_declare(queue="full-results", durable=True)
    channel.queue_bind(queue="full-results", exchange="job-exchange", routing_key="result")
    admin.set_policy("full", r"^full-results$", {"max-length": 0, "overflow": "reject-publish"})
    engine = services("engine", amqp_url, prefetch=1, result_retry_seconds=1, max_deliveries=2)
    job_id = original.publish_job(channel, value=0)
    # Each delivery: the result is nacked, retried for a second, then the job goes back to the
    # queue; past max_deliveries it is dead-lettered (its dead letter is not refused).
    wait_for(
        lambda: engine.metric("jobstack_engine_dead_lettered_total", 'reason="delivery-limit"') == 1,
        timeout=60,
        message="the job to reach the delivery limit",
    )
    assert engine.metric("jobstack_engine_publish_failures_total", 'reason="nacked"') >= 2
    assert engine.metric("jobstack_engine_deliveries_given_back_total", 'action="requeued"') >= 1
    [(properties, _body)] = original.collect(channel, "jobstack.jobs.dead", 1)
    assert properties.headers["x-jobstack-reason"].startswith("delivery-limit")
    assert json.loads(_body)["job_id"] == job_id
    admin.wait_queue("jobstack.jobs", lambda q: q["messages"] == 0 and q["messages_unacknowledged"] == 0)
    assert engine.metric("jobstack_engine_deliveries_in_hand") == 0


def test_a_refused_dead_letter_rejects_the_job_and_frees_the_slot(
    amqp_url: str, services: Callable[..., Service], channel: Any, admin: Admin
) -> None:
    engine = services("engine", amqp_url, prefetch=1)
    ui = services("user_interface", amqp_url)
    admin.delete_queue("jobstack.jobs.dead")  # the dead-letter publish is now unroutable
    original.publish_raw(channel, b"not a job")
    valid = submit(ui, 0)
    assert result_of(ui, valid)["status"] == "succeeded"  # the engine was not stuck behind it
    assert engine.metric("jobstack_engine_publish_failures_total", 'reason="unroutable"') == 1
    assert engine.metric("jobstack_engine_deliveries_given_back_total", 'action="rejected"') == 1
    admin.wait_queue("jobstack.jobs", lambda q: q["messages"] == 0 and q["messages_unacknowledged"] == 0)


def test_readyz_fails_while_a_delivery_is_held_past_the_job_limit_and_grace(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    engine = services("engine", amqp_url, max_job_seconds=1, stall_grace_seconds=1, result_retry_seconds=120)
    ui = services("user_interface", amqp_url)
    channel.queue_unbind(queue="jobstack.results", exchange="job-exchange", routing_key="result")
    job_id = submit(ui, 0)  # its result cannot be routed: the engine holds the job while it retries
    _status, body = wait_for(
        lambda: (answer := engine.get("/readyz"))[0] == 503 and answer, message="readyz to report the stall"
    )
    assert "in hand for" in body["reason"], body
    assert engine.metric("jobstack_engine_deliveries_in_hand") == 1
    assert engine.metric("jobstack_engine_oldest_delivery_seconds") > 2
    channel.queue_bind(queue="jobstack.results", exchange="job-exchange", routing_key="result")
    assert result_of(ui, job_id, timeout=60)["status"] == "succeeded"
    wait_for(lambda: engine.get("/readyz")[0] == 200, message="ready again")
    assert engine.metric("jobstack_engine_oldest_delivery_seconds") == 0


def test_readyz_fails_when_the_broker_cancels_the_consumer(
    amqp_url: str, services: Callable[..., Service], admin: Admin
) -> None:
    engine = services("engine", amqp_url)
    ui = services("user_interface", amqp_url)
    operator = admin.other_administrator()
    admin.set_permissions(configure="^$")  # the services cannot declare the queue again...
    operator.delete_queue("jobstack.jobs")  # ...which an operator deletes under the engine's consumer
    engine.wait_log("the broker cancelled our consumer")
    wait_for(lambda: engine.get("/readyz")[0] == 503, message="readyz to fail")
    admin.set_permissions(configure=".*")
    engine.wait_ready(timeout=60)
    wait_for(lambda: ui.get("/readyz")[0] == 200, timeout=60, message="the UI to declare the queue again")
    assert result_of(ui, submit(ui, 0), timeout=60)["status"] == "succeeded"
