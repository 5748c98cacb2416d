"""Property-based fuzzing of the protocol parsers: any bytes, any JSON, only a value or the parser's own refusal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobstack.protocol import (
    InvalidJob,
    InvalidResult,
    Job,
    job_id_of,
    parse_job,
    parse_result,
    printable,
    validate_payload,
)

MAX_BYTES = 65536
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
job_like = st.fixed_dictionaries(
    {"job_id": st.uuids().map(str) | st.text(max_size=40) | json_values, "job_payload": json_values},
    optional={"extra": json_values},
)
hostile = st.sampled_from(
    [
        b"[" * 60000,
        b"{" * 5000,
        b'{"job_id": "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11", "job_payload": {"type": "integer", "value": '
        + b"9" * 5000
        + b"}}",
        b"\xff\xfe\x00",
        b"NaN",
        b'"\xf3\xa0\x80\x81' * 16000 + b'"',
        b"x" * (MAX_BYTES + 1),
    ]
)
bodies = (
    st.binary(max_size=2000)
    | hostile
    | json_values.map(lambda v: json.dumps(v).encode())
    | job_like.map(lambda v: json.dumps(v).encode())
)


def _job_outcome(body: bytes) -> Job | InvalidJob:
    try:
        return parse_job(body, 60, MAX_BYTES)
    except InvalidJob as refusal:
        return refusal


@FUZZ
@given(bodies)
def test_parse_job_returns_a_job_or_its_own_refusal(body: bytes) -> None:
    outcome = _job_outcome(body)
    if isinstance(outcome, Job):
        assert 0 <= outcome.value <= 60 and outcome.job_type == "integer"
    else:
        # A refusal reason goes into an AMQP header: printable ASCII, at most 1 KiB.
        assert len(outcome.reason.encode()) <= 1024
        assert all(" " <= c <= "~" for c in outcome.reason)


@FUZZ
@given(bodies)
def test_parse_result_returns_a_result_or_its_own_refusal(body: bytes) -> None:
    try:
        result = parse_result(body, MAX_BYTES)
    except InvalidResult:
        return
    assert result["status"] in {"succeeded", "failed", "rejected"}


@FUZZ
@given(bodies)
def test_job_id_of_never_raises(body: bytes) -> None:
    job_id = job_id_of(body, MAX_BYTES)
    assert job_id is None or len(job_id) == 36


@FUZZ
@given(json_values)
def test_strict_payload_validation_refuses_or_accepts_only_clean_payloads(payload: Any) -> None:
    try:
        job_type, value = validate_payload(payload, 60, strict=True)
    except InvalidJob as refusal:
        assert len(refusal.reason.encode()) <= 1024
        return
    assert set(payload) == {"type", "value"} and (job_type, value) == (payload["type"], payload["value"])


@FUZZ
@given(st.text())
def test_printable_is_bounded_ascii(text: str) -> None:
    cleaned = printable(text)
    assert len(cleaned.encode()) <= 1024 and all(" " <= c <= "~" for c in cleaned)
