"""Failures: a killed engine, a restarted broker, a crash-looping job, SIGTERM, long jobs."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
from collections.abc import Callable
from typing import Any

from tools.rabbitmq_local import Broker

from . import original_protocol as original
from .processes import Service, wait_for
from .test_pipeline import result_of, submit


def test_job_of_a_killed_engine_completes_on_another(amqp_url: str, services: Callable[..., Service]) -> None:
    doomed = services("engine", amqp_url, instance_id="doomed")
    ui = services("user_interface", amqp_url)
    job_id = submit(ui, 3)
    doomed.wait_log("job started", job_id=job_id)
    doomed.kill()  # kill -9 mid-job: no ack was sent
    services("engine", amqp_url, instance_id="survivor")
    result = result_of(ui, job_id, timeout=30)
    assert (result["status"], result["engine"]) == ("succeeded", "survivor")


def test_broker_restart_in_the_middle_of_200_jobs_loses_none(
    own_broker: Broker, services: Callable[..., Service]
) -> None:
    url = own_broker.url()
    engine = services("engine", url, prefetch=20)
    ui = services("user_interface", url, submit_timeout=30)
    job_ids: list[str] = []

    def submit_until_accepted() -> None:
        # A client retries what was not accepted; what got a 202 must not be lost.
        while True:
            try:
                status, body = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
            except (urllib.error.URLError, OSError):
                status = 0
            if status == 202:
                job_ids.append(body["job_id"])
                return
            time.sleep(0.2)

    for index in range(200):
        if index == 100:
            own_broker.restart()
        submit_until_accepted()

    def all_done() -> bool:
        return all(ui.get(f"/jobs/{job_id}")[1]["status"] == "succeeded" for job_id in job_ids)

    wait_for(all_done, timeout=90, interval=0.5, message="all 200 results")
    assert len(set(job_ids)) == 200
    assert engine.metric("jobstack_engine_broker_reconnects_total") >= 1
    assert ui.metric("jobstack_ui_broker_reconnects_total") >= 1


def test_a_job_that_keeps_crashing_engines_is_dead_lettered(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    results = original.bind_exclusive_queue(channel, "result")
    max_deliveries = 2
    engine = services("engine", amqp_url, max_deliveries=max_deliveries)  # declares the jobs queue
    job_id = original.publish_job(channel, value=30)
    for attempt in range(1, max_deliveries + 1):
        if attempt > 1:
            engine = services("engine", amqp_url, max_deliveries=max_deliveries)
        engine.wait_log("job started", job_id=job_id, attempt=attempt)
        engine.kill()  # the job "crashed" this engine
    survivor = services("engine", amqp_url, max_deliveries=max_deliveries)
    [(properties, _body)] = original.collect(channel, "jobstack.jobs.dead", 1, timeout=20)
    assert properties.headers["x-jobstack-reason"].startswith("delivery-limit")
    [(_p, body)] = original.collect(channel, results, 1)
    assert json.loads(body)["status"] == "rejected"
    assert survivor.metric("jobstack_engine_dead_lettered_total", 'reason="delivery-limit"') == 1


def test_sigterm_finishes_the_job_in_hand_and_exits_0(amqp_url: str, services: Callable[..., Service]) -> None:
    engine = services("engine", amqp_url, shutdown_grace_seconds=10)
    ui = services("user_interface", amqp_url)
    job_id = submit(ui, 2)
    engine.wait_log("job started", job_id=job_id)
    engine.signal(signal.SIGTERM)
    assert engine.wait(timeout=20) == 0
    assert result_of(ui, job_id, timeout=5)["status"] == "succeeded"


def test_sigterm_past_the_grace_period_returns_the_job_to_the_queue(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    engine = services("engine", amqp_url, shutdown_grace_seconds=1)
    ui = services("user_interface", amqp_url)
    job_id = submit(ui, 4)
    engine.wait_log("job started", job_id=job_id)
    engine.signal(signal.SIGTERM)
    assert engine.wait(timeout=20) == 0
    assert ui.get(f"/jobs/{job_id}")[1]["status"] == "pending"
    services("engine", amqp_url, instance_id="next")
    result = result_of(ui, job_id, timeout=30)
    assert (result["status"], result["engine"]) == ("succeeded", "next")


def test_sigterm_stops_the_user_interface_with_0(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url)
    ui.signal(signal.SIGTERM)
    assert ui.wait(timeout=20) == 0


def test_a_job_longer_than_two_heartbeats_completes_without_a_reconnect(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    engine = services("engine", amqp_url, heartbeat=1)
    ui = services("user_interface", amqp_url, heartbeat=1)
    job_id = submit(ui, 4)  # 4 s: two missed heartbeat intervals would close the connection
    assert result_of(ui, job_id, timeout=20)["status"] == "succeeded"
    assert engine.metric("jobstack_engine_broker_reconnects_total") == 0
    assert not [line for line in engine.log_lines() if line.get("msg") == "lost connection to broker"]


def test_submit_during_a_broker_outage_answers_503_and_the_ui_stays_responsive(
    own_broker: Broker, services: Callable[..., Service]
) -> None:
    ui = services("user_interface", own_broker.url(), submit_timeout=1)
    own_broker.stop()
    started = time.monotonic()
    status, body = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
    assert status == 503 and "not connected to RabbitMQ" in body["error"], body
    assert time.monotonic() - started < 5  # bounded by submit_timeout, not hanging
    assert ui.get("/healthz")[0] == 200 and ui.get("/readyz")[0] == 503
    ui.signal(signal.SIGTERM)
    assert ui.wait(timeout=20) == 0
