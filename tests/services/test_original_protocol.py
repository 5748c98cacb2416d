"""The original services' wire protocol still works against the new ones (plain pika clients)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from . import original_protocol as original
from .processes import Service, wait_for


def test_original_ui_gets_a_json_result_from_the_new_engine(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    services("engine", amqp_url)
    results = original.bind_exclusive_queue(channel, "result")  # declaring job-exchange the old way works
    job_id = original.publish_job(channel, value=0)
    [(properties, body)] = original.collect(channel, results, 1)
    result = json.loads(body)
    assert (result["job_id"], result["status"], properties.correlation_id) == (job_id, "succeeded", job_id)


def test_original_engine_beside_the_new_stack_leaves_new_jobs_intact(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    # An old engine during a rollout: its exclusive queue receives copies of jobs, the new engine still runs each.
    old_engine_queue = original.bind_exclusive_queue(channel, "job")
    services("engine", amqp_url)
    ui = services("user_interface", amqp_url)
    status, body = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
    assert status == 202
    wait_for(lambda: ui.get(f"/jobs/{body['job_id']}")[1]["status"] == "succeeded", message="new engine result")
    [(_props, job)] = original.collect(channel, old_engine_queue, 1)
    assert json.loads(job)["job_payload"] == {"type": "integer", "value": 0}


def test_result_without_reply_to_goes_to_result_key_only(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    engine = services("engine", amqp_url)
    results = original.bind_exclusive_queue(channel, "result")
    job_id = str(uuid.uuid4())
    original.publish_job(channel, value=0, job_id=job_id)
    [(properties, body)] = original.collect(channel, results, 1)
    assert properties.headers is None or "CC" not in properties.headers
    assert json.loads(body)["engine"] == engine.log_lines()[0]["instance"]
