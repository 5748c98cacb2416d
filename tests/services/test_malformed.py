"""Malformed jobs end in the dead-letter queue with the reason; the engine keeps serving."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from . import original_protocol as original
from .processes import Service

JOB_ID = "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11"


def job(payload: Any, job_id: Any = JOB_ID) -> bytes:
    return json.dumps({"job_id": job_id, "job_payload": payload}).encode()


MALFORMED: dict[str, tuple[bytes, str]] = {
    "not json": (b"job complete", "body is not JSON"),
    "not utf-8": (b'{"job_id": "\xff\xfe"}', "body is not UTF-8"),
    "not an object": (b"[1, 2, 3]", "body must be a JSON object"),
    "missing job_id": (
        json.dumps({"job_payload": {"type": "integer", "value": 1}}).encode(),
        "job_id must be a non-empty string",
    ),
    "job_id not a uuid": (job({"type": "integer", "value": 1}, "42"), "job_id must be a UUID"),
    "missing payload": (json.dumps({"job_id": JOB_ID}).encode(), "job_payload must be an object"),
    "unknown type": (job({"type": "float", "value": 1}), "job_payload.type must be one of integer"),
    "value a string": (job({"type": "integer", "value": "1"}), "job_payload.value must be an integer"),
    "value a boolean": (job({"type": "integer", "value": True}), "job_payload.value must be an integer"),
    "value negative": (job({"type": "integer", "value": -5}), "must be between 0 and 60"),
    "value above maximum": (job({"type": "integer", "value": 3600}), "must be between 0 and 60"),
    "oversized body": (job({"type": "integer", "value": 1, "pad": "x" * 70000}), "more than the 65536 allowed"),
}


def test_every_kind_of_malformed_job_is_dead_lettered_with_its_reason(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    engine = services("engine", amqp_url)
    results = original.bind_exclusive_queue(channel, "result")
    for body, _reason in MALFORMED.values():
        original.publish_raw(channel, body)

    dead = original.collect(channel, "jobstack.jobs.dead", len(MALFORMED), timeout=30)
    reasons = [properties.headers["x-jobstack-reason"] for properties, _body in dead]
    assert len(dead) == len(MALFORMED)
    for kind, (_body, reason) in MALFORMED.items():
        assert any(reason in text for text in reasons), f"{kind}: no dead letter says {reason!r}: {reasons}"
    assert sorted(body for _p, body in dead) == sorted(body for body, _r in MALFORMED.values())  # bodies kept intact

    # Where a job_id could be read, its submitter hears "rejected" instead of waiting forever.
    rejected = [json.loads(body) for _p, body in original.collect(channel, results, 20, timeout=3)]
    assert {r["status"] for r in rejected} == {"rejected"}
    assert {r["job_id"] for r in rejected} == {JOB_ID, "42"}
    assert all(r["error"] for r in rejected)

    # The engine is still serving.
    job_id = original.publish_job(channel, value=0, job_id=str(uuid.uuid4()))
    later = [json.loads(body) for _p, body in original.collect(channel, results, 1)]
    assert later and later[0]["job_id"] == job_id and later[0]["status"] == "succeeded"
    assert engine.metric("jobstack_engine_dead_lettered_total", 'reason="invalid"') == len(MALFORMED)
    assert engine.process is not None and engine.process.poll() is None
