"""A broker that keeps closing connections, or applies flow control: backoff, bounded submits, no lost job.

The flow-control tests raise a memory alarm on a private node of their own
(`rabbitmqctl set_vm_memory_high_watermark`), which blocks every publisher on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tools.rabbitmq_local import Broker

from .broker_admin import Admin, rabbitmqctl
from .faulty_proxy import FaultyProxy
from .processes import Service, wait_for
from .test_page import EventStream, rows_of
from .test_pipeline import result_of, submit


def test_reconnects_after_an_established_connection_drops_back_off(
    amqp_url: str, services: Callable[..., Service], admin: Admin
) -> None:
    engine = services("engine", amqp_url)
    # The broker closes the engine's connection again each time it is re-established.
    for drop in range(1, 5):
        wait_for(lambda: admin.close_connections("engine:") > 0, timeout=60, message="an engine connection")
        engine.wait_log("lost connection to broker", timeout=30, attempt=drop)
    drops = [line for line in engine.log_lines() if line.get("msg") == "lost connection to broker"]
    assert [line["attempt"] for line in drops] == [1, 2, 3, 4]
    # Capped exponential backoff with jitter: attempt n waits between 0.25 * 2^(n-1) and 0.5 * 2^(n-1) s.
    for line in drops:
        ceiling = 0.5 * 2 ** (line["attempt"] - 1)
        assert ceiling / 2 <= line["retry_in_s"] <= ceiling, line
    engine.wait_ready(timeout=60)


@pytest.fixture(scope="module")
def alarmed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    node = Broker(tmp_path_factory.mktemp("rabbitmq-alarm"))
    node.start()
    yield node
    node.cleanup()


def memory_alarm(broker: Broker, on: bool) -> None:
    """Raise or clear the node's memory alarm, and wait until the node reports it so."""
    rabbitmqctl(broker, "set_vm_memory_high_watermark", "0.0000001" if on else "0.4")
    wait_for(
        lambda: all(node.get("mem_alarm") is on for node in broker.api("GET", "/api/nodes")),  # type: ignore[union-attr]
        message=f"the memory alarm to be {'on' if on else 'off'}",
    )


def test_submit_timeout_bounds_the_confirm_and_names_flow_control(
    alarmed_broker: Broker, services: Callable[..., Service]
) -> None:
    vhost = "flow-control-submit"
    url = alarmed_broker.add_vhost(vhost)
    services("engine", url)
    ui = services("user_interface", url, submit_timeout=2)
    memory_alarm(alarmed_broker, True)
    try:
        started = time.monotonic()
        status, headers, body = ui.raw_request("POST", "/jobs", json.dumps({"type": "integer", "value": 0}).encode())
        waited = time.monotonic() - started
        assert status == 503 and "flow control" in body["error"] and body["job_id"], body
        assert headers["Retry-After"]
        assert ui.metric("jobstack_ui_publish_failures_total", 'reason="timeout"') == 1
        late = body["job_id"]
    finally:
        memory_alarm(alarmed_broker, False)
    # Reported, not asserted as a speed: the wait is bounded by submit_timeout, not pika's 60 s.
    print(f"503 after {waited:.1f} s with submit_timeout=2")
    assert waited < 30
    # The broker took the job once the alarm cleared: it runs, and its id answers.
    assert result_of(ui, late, timeout=60)["status"] == "succeeded"


def test_a_publish_lost_with_its_connection_leaves_nothing_in_hand(
    alarmed_broker: Broker, services: Callable[..., Service]
) -> None:
    vhost = "flow-control-lost"
    url = alarmed_broker.add_vhost(vhost)
    admin = Admin(alarmed_broker, vhost)
    proxy = FaultyProxy(alarmed_broker.amqp_port)
    engine = services("engine", f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}", publish_timeout=120)
    ui = services("user_interface", url)
    job_id = submit(ui, 5)
    engine.wait_log("job started", job_id=job_id)
    memory_alarm(alarmed_broker, True)  # before the job ends, so that its result publish hangs
    try:
        engine.wait_log("broker blocked our publishes", timeout=30)
        assert engine.metric("jobstack_engine_deliveries_in_hand") == 1
        proxy.sever()  # the connection goes while the confirm is awaited
        wait_for(
            lambda: engine.metric("jobstack_engine_publish_failures_total", 'reason="connection-lost"') == 1,
            message="the lost publish to be counted",
        )
        assert engine.metric("jobstack_engine_deliveries_in_hand") == 0
    finally:
        memory_alarm(alarmed_broker, False)
    assert result_of(ui, job_id, timeout=90)["status"] == "succeeded"  # redelivered and run again
    admin.wait_queue("jobstack.jobs", lambda q: q["messages"] == 0 and q["messages_unacknowledged"] == 0)


def test_the_page_stream_outlasts_flow_control_and_shows_the_queue_again_after_it(
    alarmed_broker: Broker, services: Callable[..., Service]
) -> None:
    # A blocked connection reads nothing: the queue depth (a passive declare on the UI's channel)
    # gets no answer. The stream must keep going, say "unknown", and recover when the alarm clears.
    url = alarmed_broker.add_vhost("flow-control-page")
    services("engine", url)
    ui = services("user_interface", url, submit_timeout=2)
    stream = EventStream(ui)
    stream.wait(lambda name, data: name == "queue" and data["consumers"] == 1)
    memory_alarm(alarmed_broker, True)
    try:
        status, _headers, body = ui.raw_request("POST", "/jobs", json.dumps({"type": "integer", "value": 0}).encode())
        assert status == 503 and body["job_id"], body  # the publish blocks the UI's connection
        stream.wait(lambda name, data: name == "queue" and data["ready"] is None, timeout=60)
    finally:
        memory_alarm(alarmed_broker, False)
    # The queue is known again, and the late-confirmed job runs (in either order).
    seen: set[str] = set()

    def recovered(name: str, data: Any) -> bool:
        if name == "queue" and data["consumers"] == 1:
            seen.add("queue")
        if name == "jobs" and rows_of(data).get(body["job_id"], {}).get("state") == "succeeded":
            seen.add("job")
        return seen == {"queue", "job"}

    stream.wait(recovered, timeout=60)
    stream.close()
