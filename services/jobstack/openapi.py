"""The OpenAPI 3.0 document of the user_interface's HTTP API, served at GET /openapi.json.

tests/services/test_openapi.py drives the running service from this document (schemathesis), so
it must describe every status and body the API really answers. GET /events is described too, but
a stream does not end, so that test leaves it to tests/services/test_page.py.
"""

from __future__ import annotations

from typing import Any

from .protocol import JOB_TYPES, RESULT_STATUSES

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "job_id": {"type": "string", "format": "uuid"}},
}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}
    return response


_DRAINED = {
    "type": "object",
    "required": ["error", "submit_to"],
    "properties": {
        "error": {"type": "string"},
        "submit_to": {"type": "string", "format": "uri", "description": "the UI that takes this region's jobs"},
    },
}
_PAGE_HEADERS = {"Content-Security-Policy": {"schema": {"type": "string"}}}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": kind, "nullable": True}


def openapi_document(max_value: int, max_body_bytes: int) -> dict[str, Any]:
    status_names = sorted(RESULT_STATUSES)
    return {
        "openapi": "3.0.3",
        "info": {"title": "jobstack user_interface", "version": "1"},
        "paths": {
            "/jobs": {
                "post": {
                    "summary": "Submit a job",
                    "operationId": "submitJob",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobPayload"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "accepted: the broker confirmed the persistent job",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                        },
                        "400": _error("malformed JSON, an unknown field, or an invalid type or value"),
                        "408": _error("the body did not arrive within http_body_timeout"),
                        "413": _error(f"a body larger than {max_body_bytes} bytes"),
                        "415": _error("a Content-Type other than application/json"),
                        "429": _error("too many pending jobs, or the jobs queue is full", retry_after=True),
                        "503": {
                            **_error(
                                "no broker connection, flow control, or no confirm within submit_timeout; or this "
                                "region is drained for maintenance (drain_to_url): then submit_to names the UI "
                                "to submit to",
                                retry_after=True,
                            ),
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "anyOf": [
                                            {"$ref": "#/components/schemas/Error"},
                                            {"$ref": "#/components/schemas/Drained"},
                                        ]
                                    }
                                }
                            },
                        },
                    },
                }
            },
            "/jobs/{job_id}": {
                "get": {
                    "summary": "A job's status and result, from any replica",
                    "operationId": "getJob",
                    "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "pending, or the job's result",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobStatus"}}},
                        },
                        "404": _error("never submitted, or its result has aged out"),
                        "503": _error("the replica is still reading the results stream", retry_after=True),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The page for people: submit jobs, follow recent jobs and the queue",
                    "responses": {
                        "200": {"description": "HTML", "headers": _PAGE_HEADERS, "content": {"text/html": {}}}
                    },
                }
            },
            "/static/{name}": {
                "get": {
                    "summary": "The page's stylesheet, script and icon",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "the file",
                            "headers": _PAGE_HEADERS,
                            "content": {"text/css": {}, "text/javascript": {}, "image/svg+xml": {}},
                        },
                        "404": _error("no such file"),
                    },
                }
            },
            "/events": {
                "get": {
                    "summary": "Server-sent events: recent jobs and the jobs queue, as they change",
                    "description": (
                        "A text/event-stream that stays open. Events: `snapshot` (first, and after a burst: "
                        "EventsSnapshot), `jobs` (jobs that became pending or finished: EventsJobs), `queue` "
                        "(every 2 s: QueueState). Comment lines keep it alive."
                    ),
                    "responses": {
                        "200": {"description": "the stream", "content": {"text/event-stream": {}}},
                        "503": _error("events_max_clients streams are open already", retry_after=True),
                    },
                }
            },
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": _status_response("alive")}}},
            "/readyz": {
                "get": {
                    "summary": "readiness: connected and caught up with the results stream",
                    "responses": {"200": _status_response("ready"), "503": _status_response("not ready")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text format", "content": {"text/plain": {}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "JobPayload": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "value"],
                    "properties": {
                        "type": {"type": "string", "enum": list(JOB_TYPES)},
                        "value": {"type": "integer", "minimum": 0, "maximum": max_value},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["job_id", "status"],
                    "properties": {"job_id": {"type": "string", "format": "uuid"}, "status": {"enum": ["pending"]}},
                },
                "JobStatus": {
                    "type": "object",
                    "required": ["job_id", "status", "result"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", *status_names]},
                        "result": {"allOf": [{"$ref": "#/components/schemas/Result"}], "nullable": True},
                    },
                },
                "Result": {
                    "type": "object",
                    "required": ["job_id", "status"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": status_names},
                        "engine": {"type": "string"},
                        "started_at": {"type": "string"},
                        "finished_at": {"type": "string"},
                        "error": {"type": "string"},
                    },
                },
                "Error": _ERROR,
                "Drained": _DRAINED,
                "JobRow": {
                    "type": "object",
                    "required": ["job_id", "state", "engine", "duration_seconds", "finished_at", "error"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "state": {"type": "string", "enum": ["pending", *status_names]},
                        "engine": _nullable("string"),
                        "duration_seconds": _nullable("number"),
                        "finished_at": _nullable("string"),
                        "error": _nullable("string"),
                    },
                },
                "QueueState": {
                    "type": "object",
                    "required": ["ready", "consumers", "pending"],
                    "properties": {
                        "ready": {**_nullable("integer"), "description": "jobs waiting in the jobs queue"},
                        "consumers": {**_nullable("integer"), "description": "consumers of the jobs queue"},
                        "pending": {**_nullable("integer"), "description": "jobs without a result, all replicas"},
                    },
                },
                "EventsSnapshot": {
                    "type": "object",
                    "required": ["jobs", "queue"],
                    "properties": {
                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobRow"}},
                        "queue": {"$ref": "#/components/schemas/QueueState"},
                    },
                },
                "EventsJobs": {
                    "type": "object",
                    "required": ["jobs"],
                    "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobRow"}}},
                },
            }
        },
    }


def _status_response(status: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": [status]}, "reason": {"type": "string"}},
    }
    return {"description": status, "content": {"application/json": {"schema": schema}}}
