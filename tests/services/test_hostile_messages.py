"""No message content can close a connection, kill a task silently, or leave a delivery unacked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pika

from . import original_protocol as original
from .broker_admin import Admin
from .processes import Service, wait_for
from .test_pipeline import result_of, submit

JOB_ID = "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11"

HOSTILE: dict[str, bytes] = {
    "deep nesting": b"[" * 60000,
    "deep object nesting": b'{"a":' * 5000,
    "huge integer value": json.dumps({"job_id": JOB_ID, "job_payload": {"type": "integer", "value": 0}})
    .replace('"value": 0', '"value": ' + "9" * 5000)
    .encode(),
    "non-object JSON": b'"just a string"',
    "list with a job_id inside": b'[{"job_id": "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11"}]',
    "non-UTF-8": b"\xff\xfe\xfd",
    "oversized": b'{"pad": "' + b"x" * 70000 + b'"}',
    # 16,000 x U+E0001 (4 UTF-8 bytes each): a reason quoting it verbatim would not fit in a frame.
    "64 KiB of non-printable text": json.dumps(
        {"job_id": JOB_ID, "job_payload": {"type": "integer", "value": "\U000e0001" * 16000}}, ensure_ascii=False
    ).encode(),
    "control characters": json.dumps({"job_id": JOB_ID, "job_payload": {"type": "\x00\x1b[2J\r\n"}}).encode(),
}


def test_hostile_jobs_are_dead_lettered_with_a_bounded_printable_reason(
    amqp_url: str, services: Callable[..., Service], channel: Any, admin: Admin
) -> None:
    # prefetch 1: one stuck delivery would stop this engine, and the valid job behind them.
    engine = services("engine", amqp_url, prefetch=1, max_deliveries=3)
    ui = services("user_interface", amqp_url)
    for body in HOSTILE.values():
        original.publish_raw(channel, body)
    valid = submit(ui, 0)
    assert result_of(ui, valid, timeout=60)["status"] == "succeeded"

    dead = original.collect(channel, "jobstack.jobs.dead", len(HOSTILE), timeout=30)
    assert sorted(body for _p, body in dead) == sorted(HOSTILE.values())  # bodies kept intact
    for properties, _body in dead:
        reason = properties.headers["x-jobstack-reason"]
        assert len(reason.encode()) <= 1024 and reason.isprintable() and reason.isascii(), reason[:200]
    assert engine.metric("jobstack_engine_dead_lettered_total", 'reason="invalid"') == len(HOSTILE)
    assert engine.metric("jobstack_engine_dead_lettered_total", 'reason="delivery-limit"') == 0
    # No content reset the connection, and nothing is left in hand.
    assert engine.metric("jobstack_engine_broker_reconnects_total") == 0
    assert engine.metric("jobstack_engine_deliveries_in_hand") == 0
    admin.wait_queue("jobstack.jobs", lambda q: q["messages_unacknowledged"] == 0 and q["messages"] == 0)
    assert "Task exception was never retrieved" not in engine.log_text()


def test_hostile_results_are_ignored_and_the_ui_keeps_answering(
    amqp_url: str, services: Callable[..., Service], channel: Any, admin: Admin
) -> None:
    ui = services("user_interface", amqp_url)
    pending = submit(ui, 0)  # no engine: it stays pending while the hostile results arrive
    for body in HOSTILE.values():
        for properties in (
            pika.BasicProperties(),
            pika.BasicProperties(correlation_id=pending),  # aimed at a real job
            pika.BasicProperties(correlation_id=pending, headers={"x-jobstack-status": "succeeded"}),
        ):
            channel.basic_publish("job-exchange", "result", body, properties)
    # A result whose body is a list, with the job's id: it used to raise AttributeError.
    channel.basic_publish(
        "job-exchange",
        "result",
        json.dumps([{"job_id": pending}]).encode(),
        pika.BasicProperties(correlation_id=pending),
    )
    wait_for(lambda: ui.metric("jobstack_ui_records_ignored_total") >= 2 * len(HOSTILE), message="ignored records")
    status, body = ui.get(f"/jobs/{pending}")
    # The forged "succeeded" header came with a body that is no result: shown as no result at all.
    assert status == 200 and body["status"] in ("pending", "succeeded") and body["result"] is None, body
    assert ui.metric("jobstack_ui_broker_reconnects_total") == 0
    assert ui.get("/readyz")[0] == 200
    admin.wait_queue("jobstack.results", lambda q: q["messages_unacknowledged"] == 0)
    services("engine", amqp_url)
    fresh = submit(ui, 0)
    assert result_of(ui, fresh)["status"] == "succeeded"


def test_a_result_for_an_unknown_job_never_appears(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    ui = services("user_interface", amqp_url)
    stranger = str(uuid.uuid4())
    body = json.dumps({"job_id": stranger, "status": "succeeded"}).encode()
    channel.basic_publish("job-exchange", "result", body, pika.BasicProperties(correlation_id=stranger))
    wait_for(lambda: ui.metric("jobstack_ui_results_foreign_total") == 1, message="the foreign result")
    assert ui.get(f"/jobs/{stranger}")[0] == 404
