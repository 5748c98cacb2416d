"""The job/result wire format shared with the original services, and parsers that survive any body.

A job:    {"job_id": "<uuid4>", "job_payload": {"type": "integer", "value": <int>}}
A result: {"job_id", "status": "succeeded"|"failed"|"rejected", "engine", "started_at",
           "finished_at", "error"?}

Every parser here either returns its value or raises its own refusal (InvalidJob, InvalidResult);
no body, however hostile, makes it raise anything else. The hypothesis tests in
tests/services/test_fuzz_parsers.py hold them to that.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EXCHANGE = "job-exchange"
JOB_KEY = "job"
RESULT_KEY = "result"
JOB_TYPES = ("integer",)
PAYLOAD_FIELDS = ("type", "value")
REASON_HEADER = "x-jobstack-reason"
# Set by the engine on every result so that a reader can count it without parsing the body.
STATUS_HEADER = "x-jobstack-status"
# A reason goes into an AMQP header: bounded, so that no content can make a frame too large.
MAX_REASON_BYTES = 1024


class ResultStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


RESULT_STATUSES = frozenset(status.value for status in ResultStatus)


class RefusalKind(enum.StrEnum):
    """Why the engine refuses a job; the values are the `reason` label of dead_lettered_total."""

    INVALID = "invalid"
    DELIVERY_LIMIT = "delivery-limit"
    UNROUTABLE = "unroutable"


@dataclass(frozen=True)
class Job:
    job_id: str
    job_type: str
    value: int


class InvalidJob(Exception):
    """A job the engine refuses; job_id is set when it could be read from the body."""

    def __init__(self, reason: str, job_id: str | None = None, kind: RefusalKind = RefusalKind.INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.kind = kind


class InvalidResult(Exception):
    """A message on the result key that is not a result this project can read."""


def printable(text: str, limit: int = MAX_REASON_BYTES) -> str:
    """text as printable ASCII (anything else backslash-escaped), cut to at most limit bytes.

    Reasons quote what a client sent; they end up in headers, logs and JSON answers.
    """
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    cleaned = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)
    if len(cleaned) <= limit:
        return cleaned
    return cleaned[: limit - 3] + "..."


def _quote(value: Any) -> str:
    """A short, safe rendering of a client's value for a refusal reason."""
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a very large integer"
    else:
        text = f"a JSON {type(value).__name__}"
    return printable(text, 80)


def loads(data: bytes | str) -> Any:
    """json.loads that refuses NaN/Infinity and turns every failure into ValueError."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg}") from None
    except ValueError as error:  # e.g. an integer longer than Python's int-string limit
        raise ValueError(printable(str(error), 200)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def is_job_id(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def validate_payload(payload: Any, max_value: int, strict: bool = False) -> tuple[str, int]:
    """Check a job_payload; return (type, value) or raise InvalidJob with the reason.

    strict (the HTTP API): unknown fields are refused by name, since the engine would otherwise
    carry them along. The engine is lenient, as the original protocol does not forbid extras.
    """
    if not isinstance(payload, dict):
        raise InvalidJob("job_payload must be an object")
    if strict:
        unknown = sorted(str(key) for key in payload if key not in PAYLOAD_FIELDS)
        if unknown:
            raise InvalidJob(printable(f"unknown field {unknown[0]!r} (allowed: type, value)", 200))
    job_type = payload.get("type")
    if job_type not in JOB_TYPES:
        raise InvalidJob(f"job_payload.type must be one of {', '.join(JOB_TYPES)}, got {_quote(job_type)}")
    value = payload.get("value")
    # bool is a subclass of int in Python, but true is not a number of seconds.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidJob(f"job_payload.value must be an integer, got {_quote(value)}")
    if not 0 <= value <= max_value:
        raise InvalidJob(f"job_payload.value must be between 0 and {max_value}, got {_quote(value)}")
    return str(job_type), value


def _document(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise InvalidJob(f"body is {len(body)} bytes, more than the {max_bytes} allowed")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJob("body is not UTF-8") from None
    try:
        return loads(text)
    except ValueError as error:
        raise InvalidJob(f"body is not valid JSON: {error}") from None


def parse_job(body: bytes, max_value: int, max_bytes: int) -> Job:
    """Decode and validate a job message body; raise InvalidJob (and nothing else) if it is not one."""
    document = _document(body, max_bytes)
    if not isinstance(document, dict):
        raise InvalidJob("body must be a JSON object")
    job_id = document.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJob("job_id must be a non-empty string")
    if not is_job_id(job_id):
        raise InvalidJob(f"job_id must be a UUID, got {_quote(job_id[:64])}", printable(job_id, 64))
    try:
        job_type, value = validate_payload(document.get("job_payload"), max_value)
    except InvalidJob as error:
        raise InvalidJob(error.reason, job_id) from None
    return Job(job_id=job_id, job_type=job_type, value=value)


def job_id_of(body: bytes, max_bytes: int) -> str | None:
    """The job_id of a body if one can be read at all (for a refusal or a foreign job record)."""
    try:
        document = _document(body, max_bytes)
    except InvalidJob:
        return None
    job_id = document.get("job_id") if isinstance(document, dict) else None
    return job_id if is_job_id(job_id) else None


def parse_result(body: bytes, max_bytes: int) -> dict[str, Any]:
    """A result document with a UUID job_id and a known status, or InvalidResult."""
    try:
        document = _document(body, max_bytes)
    except InvalidJob as error:
        raise InvalidResult(error.reason) from None
    if not isinstance(document, dict):
        raise InvalidResult("a result must be a JSON object")
    if not is_job_id(document.get("job_id")):
        raise InvalidResult("a result needs a UUID job_id")
    if document.get("status") not in RESULT_STATUSES:
        raise InvalidResult(f"unknown result status {_quote(document.get('status'))}")
    return document


def new_job(payload: dict[str, Any]) -> tuple[str, bytes]:
    """A fresh job_id and the JSON body of a job for payload."""
    job_id = str(uuid.uuid4())
    return job_id, json.dumps({"job_id": job_id, "job_payload": payload}).encode()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def result_body(job_id: str, status: ResultStatus, engine: str, started_at: str, error: str | None = None) -> bytes:
    result: dict[str, Any] = {
        "job_id": job_id,
        "status": status.value,
        "engine": engine,
        "started_at": started_at,
        "finished_at": utc_now(),
    }
    if error is not None:
        result["error"] = printable(error)
    return json.dumps(result).encode()
