"""The page at / and its event stream (GET /events) against a real broker, UI and engine.

The page itself is driven in a real browser by tests/browser/test_page_in_browser.py; here are the
server's promises: a strict Content-Security-Policy, nothing from another host, live events that
match the OpenAPI document, a bounded number of streams that outlive the HTTP timeouts, and streams
that end when the UI stops.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import pika

from .broker_admin import Admin
from .processes import ROOT, Service, wait_for
from .test_config import run_service
from .test_pipeline import submit

STATIC = ROOT / "services" / "jobstack" / "static"


class EventStream:
    """A GET /events client that reads one server-sent event at a time."""

    def __init__(self, ui: Service, read_timeout: float = 15) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", ui.http_port, timeout=read_timeout)
        self.connection.request("GET", "/events")
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())

    def next(self) -> tuple[str, Any] | None:
        """(event name, decoded data), or None when the server ended the stream."""
        name, data = "message", []
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if not text:
                if data:
                    return name, json.loads("\n".join(data))
                name = "message"
            elif not text.startswith(":"):
                field, _, value = text.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)

    def wait(self, predicate: Callable[[str, Any], bool], timeout: float = 30) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next()
            if event is None:
                raise AssertionError("the server ended the event stream")
            if predicate(*event):
                return event
        raise AssertionError(f"no matching event within {timeout} s")

    def close(self) -> None:
        self.connection.close()


def open_stream(ui: Service) -> EventStream | None:
    """A stream, or None (and the connection closed) when the UI refuses one."""
    stream = EventStream(ui)
    if stream.status == 200:
        return stream
    stream.close()
    return None


def openapi_schema(ui: Service, name: str) -> dict[str, Any]:
    """A component of the UI's OpenAPI 3.0 document as JSON Schema (nullable -> a null type)."""
    _status, document = ui.get("/openapi.json")
    components = copy.deepcopy(document["components"]["schemas"])

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: convert(value) for key, value in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if isinstance(node.get("$ref"), str):
                node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/$defs/")
            return node
        return [convert(item) for item in node] if isinstance(node, list) else node

    return {**convert(components[name]), "$defs": convert(components)}


def rows_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["job_id"]: row for row in data["jobs"]}


# -- the page and its files ------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_strict_content_security_policy(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    ui = services("user_interface", amqp_url, loop_min_value=2, loop_max_value=7)
    status, headers, page = ui.raw_request("GET", "/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert all(policy[kind] == "'self'" for kind in ("script-src", "style-src", "connect-src", "img-src"))
    assert headers["X-Content-Type-Options"] == "nosniff"
    # The settings the page needs are rendered into it; the drain banner is hidden.
    assert 'data-random-min="2" data-random-max="7"' in page and 'max="60"' in page
    banner = re.search(r'<section id="drained"([^>]*)>', page)
    assert banner is not None and "hidden" in banner.group(1)
    # Every file it references is ours and is served with its type; nothing is inline.
    references = [ref for ref in re.findall(r'(?:src|href)="([^"]*)"', page) if ref]  # the banner's link is empty
    assert len(references) == 3 and all(ref.startswith("/static/") for ref in references), references
    assert "<script>" not in page and "style=" not in page
    types = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
    for reference in references:
        status, headers, _body = ui.raw_request("GET", reference)
        assert status == 200 and headers["Content-Type"].startswith(types[reference[reference.rfind(".") :]])
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert ui.get("/static/../user_interface.py")[0] == 404
    assert ui.get("/static/index.html")[0] == 404  # only the rendered page, at /


def test_the_page_names_no_other_host() -> None:
    # No CDN, no web font, no analytics: the files name no URL at all (the browser test also
    # watches every request the page makes).
    for path in sorted(STATIC.iterdir()):
        text = path.read_text(encoding="utf-8")
        # The SVG namespace is a name, never fetched.
        urls = [url for url in re.findall(r"(?:https?:)?//[\w.-]+", text) if url != "http://www.w3.org"]
        assert urls == [], (path.name, urls)
        assert "@import" not in text and "@font-face" not in text, path.name


# -- the event stream ------------------------------------------------------------------------------


def test_the_stream_sends_a_snapshot_then_each_job_from_pending_to_its_result(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    engine = services("engine", amqp_url)
    ui = services("user_interface", amqp_url)
    earlier = submit(ui, 0)
    wait_for(lambda: ui.get(f"/jobs/{earlier}")[1]["status"] == "succeeded", message="the first job's result")
    stream = EventStream(ui)
    assert (stream.status, stream.headers["Content-Type"]) == (200, "text/event-stream")
    assert "default-src 'none'" in stream.headers["Content-Security-Policy"]
    name, snapshot = stream.next() or ("", {})
    assert name == "snapshot" and rows_of(snapshot)[earlier]["state"] == "succeeded", snapshot
    jsonschema.validate(snapshot, openapi_schema(ui, "EventsSnapshot"))

    job_id = submit(ui, 1)
    seen: dict[str, dict[str, Any]] = {}

    def finished(name: str, data: Any) -> bool:
        if name == "jobs":
            jsonschema.validate(data, openapi_schema(ui, "EventsJobs"))
            if job_id in rows_of(data):
                seen[rows_of(data)[job_id]["state"]] = rows_of(data)[job_id]
        return "succeeded" in seen

    stream.wait(finished)
    assert seen["pending"]["engine"] is None
    row = seen["succeeded"]
    assert row["engine"] == engine.log_lines()[0]["instance"]
    assert row["duration_seconds"] >= 1 and row["finished_at"] and row["error"] is None
    stream.close()


def test_the_stream_reports_the_jobs_queue_depth_and_consumers(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url)  # no engine: the jobs wait in the queue
    for _ in range(3):
        submit(ui, 0)
    stream = EventStream(ui)
    _name, queue = stream.wait(lambda name, data: name == "queue" and data["ready"] == 3)
    jsonschema.validate(queue, openapi_schema(ui, "QueueState"))
    assert (queue["consumers"], queue["pending"]) == (0, 3)
    engine = services("engine", amqp_url)
    stream.wait(lambda name, data: name == "queue" and data == {"ready": 0, "consumers": 1, "pending": 0})
    assert engine.metric("jobstack_engine_jobs_total", 'status="succeeded"') == 3
    stream.close()


def test_a_forged_result_reaches_the_page_as_checked_plain_data(
    amqp_url: str, services: Callable[..., Service], channel: Any
) -> None:
    # Anyone who may publish under `result` can forge one: its fields are bounded and typed.
    ui = services("user_interface", amqp_url)
    job_id = submit(ui, 0)
    stream = EventStream(ui)
    forged = {
        "job_id": job_id,
        "status": "failed",
        "engine": "<img src=x onerror=alert(1)>" + "e" * 5000,
        "error": {"not": "a string"},
        "started_at": "2026-01-01T00:00:10Z",
        "finished_at": "yesterday",
    }
    properties = pika.BasicProperties(correlation_id=job_id, headers={"x-jobstack-status": "failed"})
    channel.basic_publish("job-exchange", "result", json.dumps(forged).encode(), properties)
    _name, data = stream.wait(
        lambda name, data: name == "jobs" and rows_of(data).get(job_id, {}).get("state") == "failed"
    )
    row = rows_of(data)[job_id]
    assert row["state"] == "failed" and row["error"] is None and row["finished_at"] is None
    assert row["duration_seconds"] is None and len(row["engine"]) == 100
    jsonschema.validate(data, openapi_schema(ui, "EventsJobs"))
    stream.close()


def test_streams_outlive_the_http_header_and_body_timeouts(amqp_url: str, services: Callable[..., Service]) -> None:
    ui = services("user_interface", amqp_url, http_header_timeout=1, http_body_timeout=1)
    stream = EventStream(ui)
    opened = time.monotonic()
    # Queue events come every 2 s: the third arrives well after both timeouts would have struck.
    for _ in range(3):
        stream.wait(lambda name, _data: name == "queue")
    assert time.monotonic() - opened > 3
    assert submit(ui, 0)  # and the stream did not stop the API
    stream.close()


def test_streams_are_bounded_to_half_the_connection_cap_and_a_closed_one_frees_its_slot(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    # events_max_clients is 32, but with 4 connections at most 2 may be streams.
    ui = services("user_interface", amqp_url, http_max_connections=4, retry_after_seconds=9)
    streams = [EventStream(ui) for _ in range(2)]
    assert [stream.status for stream in streams] == [200, 200]
    refused = EventStream(ui)
    assert (refused.status, refused.headers["Retry-After"]) == (503, "9")
    assert "event streams are open" in json.loads(refused.response.read())["error"]
    refused.close()
    assert ui.raw_request("HEAD", "/events")[0] == 405  # a body-less stream would never end
    assert submit(ui, 0)  # the API still finds a connection
    streams[0].close()
    extra = wait_for(lambda: open_stream(ui), message="the freed stream slot")
    extra.close()
    streams[1].close()


def test_a_stopping_ui_ends_its_streams_and_exits(amqp_url: str, services: Callable[..., Service]) -> None:
    # aiohttp waits up to a minute for running handlers when it stops: the streams must end first.
    ui = services("user_interface", amqp_url)
    stream = EventStream(ui)
    stream.wait(lambda name, _data: name == "snapshot")
    ui.signal(signal.SIGTERM)
    assert ui.wait(timeout=20) == 0
    while stream.next() is not None:  # the end of the stream, not a read timeout
        pass


# -- the drain switch -----------------------------------------------------------------------------

OTHER_REGION = "https://jobs.region-2.example.com/"


def test_a_drained_region_refuses_new_jobs_with_a_pointer_and_keeps_answering(
    amqp_url: str, services: Callable[..., Service]
) -> None:
    services("engine", amqp_url)
    open_ui = services("user_interface", amqp_url)
    drained = services("user_interface", amqp_url, drain_to_url=OTHER_REGION, retry_after_seconds=30)
    for body in (json.dumps({"type": "integer", "value": 0}).encode(), b"not json"):
        status, headers, answer = drained.raw_request("POST", "/jobs", body)
        assert (status, headers["Retry-After"], answer["submit_to"]) == (503, "30", OTHER_REGION), answer
        assert "drained for maintenance" in answer["error"] and "\n" not in answer["error"]
        jsonschema.validate(answer, openapi_schema(drained, "Drained"))
    assert drained.metric("jobstack_ui_jobs_submitted_total") == 0
    assert (drained.metric("jobstack_ui_drained"), open_ui.metric("jobstack_ui_drained")) == (1, 0)
    # Reads keep working: a job of the region's other replica, its result, readiness, the page.
    job_id = submit(open_ui, 0)
    wait_for(lambda: drained.get(f"/jobs/{job_id}")[1].get("status") == "succeeded", message="the result")
    assert drained.get("/readyz") == (200, {"status": "ready"})
    _status, _headers, page = drained.raw_request("GET", "/")
    banner = re.search(r'<section id="drained"([^>]*)>', page)
    assert banner is not None and "hidden" not in banner.group(1)
    assert f'href="{OTHER_REGION}"' in page and "<fieldset disabled>" in page
    stream = EventStream(drained)
    assert stream.status == 200
    stream.close()


def test_drain_to_url_must_be_an_http_url() -> None:
    for bad in ("javascript:alert(1)", "region-2", "https://", "https://a b/"):
        result = run_service("user_interface", env={"USER_INTERFACE_DRAIN_TO_URL": bad})
        assert result.returncode == 2, result.stderr
        assert "drain_to_url (USER_INTERFACE_DRAIN_TO_URL) must be an http:// or https:// URL" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


# -- the pending gauge ----------------------------------------------------------------------------


def test_the_pending_gauge_is_nan_while_the_view_is_stale(
    amqp_url: str, services: Callable[..., Service], admin: Admin
) -> None:
    # The dashboard takes the max over a region's replicas as the region's pending jobs: a replica
    # that cannot read the stream must not offer its stale count.
    ui = services("user_interface", amqp_url)
    submit(ui, 0)
    assert ui.metric("jobstack_ui_jobs_pending") == 1
    admin.clear_permissions()  # it cannot come back until they are restored
    # The management API lists a new connection after a few seconds.
    wait_for(lambda: admin.close_connections("user_interface:") > 0, timeout=60, message="the UI's connection")
    wait_for(lambda: ui.get("/readyz")[0] == 503, message="the UI to lose its broker")
    assert math.isnan(ui.metric("jobstack_ui_jobs_pending"))
    admin.set_permissions(".*")
    wait_for(lambda: ui.get("/readyz")[0] == 200, timeout=60, message="the UI to reconnect and catch up")
    assert ui.metric("jobstack_ui_jobs_pending") == 1
