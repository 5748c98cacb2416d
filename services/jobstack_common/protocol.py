"""The job/result wire format shared with the original services.

A job:    {"job_id": "<uuid4>", "job_payload": {"type": "integer", "value": <int>}}
A result: {"job_id", "status": "succeeded"|"failed"|"rejected", "engine", "started_at",
           "finished_at", "error"?}
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EXCHANGE = "job-exchange"
JOB_KEY = "job"
RESULT_KEY = "result"
JOB_TYPES = ("integer",)
REASON_HEADER = "x-jobstack-reason"


@dataclass(frozen=True)
class Job:
    job_id: str
    job_type: str
    value: int


class InvalidJob(Exception):
    """A job the engine refuses; job_id is set when it could be read from the body."""

    def __init__(self, reason: str, job_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id


def validate_payload(payload: Any, max_value: int) -> tuple[str, int]:
    """Check a job_payload; return (type, value) or raise InvalidJob with the reason."""
    if not isinstance(payload, dict):
        raise InvalidJob("job_payload must be an object")
    job_type = payload.get("type")
    if job_type not in JOB_TYPES:
        raise InvalidJob(f"job_payload.type must be one of {', '.join(JOB_TYPES)}, got {job_type!r}")
    value = payload.get("value")
    # bool is a subclass of int in Python, but true is not a number of seconds.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidJob(f"job_payload.value must be an integer, got {value!r}")
    if not 0 <= value <= max_value:
        raise InvalidJob(f"job_payload.value must be between 0 and {max_value}, got {value}")
    return job_type, value


def parse_job(body: bytes, max_value: int, max_bytes: int) -> Job:
    """Decode and validate a job message body."""
    if len(body) > max_bytes:
        raise InvalidJob(f"body is {len(body)} bytes, more than the {max_bytes} allowed")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJob("body is not UTF-8") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidJob(f"body is not JSON: {error.msg}") from None
    if not isinstance(document, dict):
        raise InvalidJob("body must be a JSON object")
    job_id = document.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJob("job_id must be a non-empty string")
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidJob(f"job_id must be a UUID, got {job_id[:64]!r}", job_id) from None
    try:
        job_type, value = validate_payload(document.get("job_payload"), max_value)
    except InvalidJob as error:
        raise InvalidJob(error.reason, job_id) from None
    return Job(job_id=job_id, job_type=job_type, value=value)


def new_job(payload: dict[str, Any]) -> tuple[str, bytes]:
    """A fresh job_id and the JSON body of a job for payload."""
    job_id = str(uuid.uuid4())
    return job_id, json.dumps({"job_id": job_id, "job_payload": payload}).encode()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def result_body(job_id: str, status: str, engine: str, started_at: str, error: str | None = None) -> bytes:
    result: dict[str, Any] = {
        "job_id": job_id,
        "status": status,
        "engine": engine,
        "started_at": started_at,
        "finished_at": utc_now(),
    }
    if error is not None:
        result["error"] = error
    return json.dumps(result).encode()
