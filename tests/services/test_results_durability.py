"""A finished job's outcome survives broker restarts, a UI that reconnects late, and a UI replica restart."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest
from jobstack.amqp import Session
from jobstack.config import load_settings
from jobstack.user_interface import UserInterface, UserInterfaceSettings

from tools.rabbitmq_local import Broker, free_port

from .broker_admin import Admin
from .processes import ROOT, Service, wait_for
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


def test_an_accepted_record_lost_with_the_connection_is_written_again(
    amqp_url: str, services: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chaos test's case, made deterministic: the submitting replica's connection drops after the
    # job's confirm and before its batched accepted record goes out. The other replicas must still
    # learn about the job (pending, then its result), not ignore it as a job nobody submitted.
    other = services("user_interface", amqp_url, instance_id="ui-other")
    monkeypatch.setenv("AMQP_URL", amqp_url)
    monkeypatch.setenv("USER_INTERFACE_HTTP_PORT", str(free_port()))
    monkeypatch.setenv("USER_INTERFACE_INSTANCE_ID", "ui-submitter")
    config = ROOT / "services" / "user_interface" / "config.ini"
    settings = load_settings(UserInterfaceSettings, config, "user-interface", "USER_INTERFACE")

    async def submit_across_a_drop() -> str:
        ui = UserInterface(settings)
        running = asyncio.ensure_future(ui.run())
        while not ui.ready:
            assert not running.done(), running
            await asyncio.sleep(0.05)
        write = ui._write_accepted

        def drop_then_write(session: Session, batch: list[str]) -> None:
            session.abort("the connection drops between the job's confirm and its record")
            write(session, batch)

        ui._write_accepted = drop_then_write  # type: ignore[method-assign]
        try:
            job_id = await ui.submit({"type": "integer", "value": 0})
        finally:
            ui._write_accepted = write  # type: ignore[method-assign]
        try:
            # The submitter reconnects and writes the record again; the other replica reads it.
            for _ in range(300):
                status, body = await asyncio.to_thread(other.get, f"/jobs/{job_id}")
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert (status, body.get("status")) == (200, "pending"), (status, body)
        finally:
            await ui.shutdown()
            await running
        return job_id

    job_id = asyncio.run(submit_across_a_drop())
    services("engine", amqp_url)
    assert result_of(other, job_id, timeout=30)["status"] == "succeeded"
