"""The HTTP API: strict input, back-pressure instead of forgetting, slow clients, access log and metrics."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika

from . import original_protocol as original
from .processes import Service, wait_for
from .test_pipeline import result_of, submit

JOB = {"type": "integer", "value": 0}


def test_strict_input_refuses_what_the_engine_would_refuse(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url)
    cases: list[tuple[bytes, str, int, str]] = [
        (json.dumps({**JOB, "pad": "x" * 9000}).encode(), "application/json", 400, "unknown field 'pad'"),
        (json.dumps({**JOB, "Value": 1}).encode(), "application/json", 400, "unknown field 'Value'"),
        (json.dumps(JOB).encode(), "text/plain", 415, "Content-Type must be application/json"),
        (b"value=1", "application/x-www-form-urlencoded", 415, "Content-Type must be application/json"),
        (b'{"type": "integer", "value": ', "application/json", 400, "body is not JSON"),
        (b"[" * 10000, "application/json", 400, "nested too deeply"),
        (b'{"type": "integer", "value": ' + b"9" * 5000 + b"}", "application/json", 400, "body is not JSON"),
        (b'{"type": "integer", "value": NaN}', "application/json", 400, "NaN is not a JSON number"),
        (b"\xff\xfe", "application/json", 400, "not UTF-8"),
        (b"x" * 20000, "application/json", 413, "body larger than"),
    ]
    for data, content_type, status, message in cases:
        answered, _headers, body = ui.raw_request("POST", "/jobs", data, content_type)
        assert (answered, message in body["error"]) == (status, True), (data[:60], content_type, body)
    assert ui.metric("jobstack_ui_jobs_submitted_total") == 0
    # The process is intact: a good job is still accepted.
    assert ui.request("POST", "/jobs", JOB)[0] == 202


def test_pending_jobs_are_never_evicted_and_the_bound_answers_429(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    ui = services("user_interface", amqp_url, max_pending=3, retry_after_seconds=7)  # no engine: all stay pending
    accepted = [submit(ui, 0) for _ in range(3)]
    status, headers, body = ui.raw_request("POST", "/jobs", json.dumps(JOB).encode())
    assert status == 429 and headers["Retry-After"] == "7", (status, headers, body)
    assert "pending" in body["error"]
    assert [ui.get(f"/jobs/{job_id}")[1]["status"] for job_id in accepted] == ["pending"] * 3
    assert ui.metric("jobstack_ui_jobs_pending") == 3


def test_finished_results_age_out_by_count(amqp_url: str, services: Callable[..., Service]) -> None:
    services("engine", amqp_url)
    ui = services("user_interface", amqp_url, results_kept=2)
    job_ids = [submit(ui, 0) for _ in range(3)]
    for job_id in job_ids[1:]:
        result_of(ui, job_id)
    wait_for(lambda: ui.get(f"/jobs/{job_ids[0]}")[0] == 404, message="the oldest result to age out")
    assert ui.get(f"/jobs/{job_ids[2]}")[1]["status"] == "succeeded"


def _connect(ui: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", ui.http_port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it kept the connection open."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_slow_headers_and_slow_bodies_are_cut_off(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url, http_header_timeout=1, http_body_timeout=1)
    slow_headers = _connect(ui)
    slow_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    assert _closed_within(slow_headers, 15) is not None, "a client sending headers slowly kept its connection"
    slow_body = _connect(ui)
    slow_body.sendall(
        b'POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"ty'
    )
    answer = _closed_within(slow_body, 15)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert ui.metric("jobstack_ui_http_slow_requests_closed_total") == 1
    assert ui.get("/healthz")[0] == 200


def test_connections_above_the_cap_are_refused(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url, http_max_connections=3)
    held = [_connect(ui) for _ in range(3)]
    for sock in held:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: stays open
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    extra = _connect(ui)
    answer = _closed_within(extra, 10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer, answer
    for sock in held:
        sock.close()
    wait_for(lambda: ui.get("/healthz")[0] == 200, message="a free slot after the others closed")
    assert ui.metric("jobstack_ui_http_connections_refused_total") >= 1


def test_access_log_and_request_metrics_use_the_route_template(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url)
    job_id = "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11"
    ui.raw_request("POST", "/jobs", json.dumps({**JOB, "note": "do-not-log-me"}).encode())
    ui.get(f"/jobs/{job_id}")
    lines = [line for line in ui.log_lines() if line.get("msg") == "http request"]
    get = next(line for line in lines if line["route"] == "/jobs/{job_id}")
    assert (get["method"], get["status"], get["path"]) == ("GET", 404, f"/jobs/{job_id}")
    assert isinstance(get["duration_ms"], float)
    assert "do-not-log-me" not in ui.log_text()  # bodies are never logged
    assert ui.metric("jobstack_ui_http_requests_total", 'method="GET",route="/jobs/{job_id}",status="404"') == 1
    assert ui.metric("jobstack_ui_http_requests_total", 'method="POST",route="/jobs",status="400"') == 1
    _status, text = ui.get("/metrics")
    assert job_id not in text  # the raw path never becomes a label
    assert 'jobstack_ui_http_request_duration_seconds_count{method="GET",route="/jobs/{job_id}"}' in text


def test_reply_to_cannot_route_results_anywhere_but_a_reply_queue(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    engine = services("engine", amqp_url)
    reply_queue = "jobstack.replies.old-ui"
    channel.queue_declare(queue=reply_queue, durable=True)
    channel.queue_bind(queue=reply_queue, exchange="job-exchange", routing_key=reply_queue)
    for reply_to in ("job", reply_queue):
        body = json.dumps({"job_id": str(uuid.uuid4()), "job_payload": JOB}).encode()
        channel.basic_publish("job-exchange", "job", body, pika.BasicProperties(reply_to=reply_to))
    wait_for(lambda: engine.metric("jobstack_engine_jobs_total", 'status="succeeded"') == 2, message="two jobs")
    # reply_to="job" did not send the result into the jobs queue as a new "job"...
    time.sleep(1)
    assert engine.metric("jobstack_engine_jobs_total", 'status="succeeded"') == 2
    assert engine.metric("jobstack_engine_dead_lettered_total", 'reason="invalid"') == 0
    # ...while a reply queue of the user_interface's naming scheme still gets its result (rollouts).
    assert len(original.collect(channel, reply_queue, 1)) == 1


def test_result_metrics_take_only_known_labels_and_unknown_results_are_ignored(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    ui = services("user_interface", amqp_url)
    stranger = str(uuid.uuid4())
    for status in ("exfiltrated-1", "exfiltrated-2", "succeeded"):
        body = json.dumps({"job_id": stranger, "status": status}).encode()
        headers = {"x-jobstack-status": status}
        channel.basic_publish(
            "job-exchange", "result", body, pika.BasicProperties(correlation_id=stranger, headers=headers)
        )
    wait_for(lambda: ui.metric("jobstack_ui_records_ignored_total") >= 2, message="forged results ignored")
    assert ui.get(f"/jobs/{stranger}")[0] == 404  # a result for a job nobody submitted is not shown
    _status, text = ui.get("/metrics")
    assert "exfiltrated" not in text
