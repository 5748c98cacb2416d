"""jobstack smoke test client: submit jobs through the public API and wait for their results.

Standard library only, so that it runs as is on the control node (Docker target: the published
port; Kubernetes: the Ingress host) and inside a short-lived pod from the user_interface image
(Kubernetes without an external address: the Service), with `python -c`.

    smoke_client.py BASE_URL VALUE COUNT TIMEOUT INTERVAL [RESOLVE_ADDRESS]

RESOLVE_ADDRESS (like curl --resolve): connect to this address instead of resolving BASE_URL's
host, which is still sent as Host header and TLS server name (an Ingress whose DNS name does not
point here yet). Only /jobs is used: the Ingress routes nothing else. A 502, 503 or 504, or no
answer, is retried until TIMEOUT (the front door may still be picking up the new pods). Prints one
JSON line {"ok", "message", "jobs": {job_id: {"status", "engine"}}} and exits 0 only when every job
succeeded.
"""

import http.client
import json
import socket
import ssl
import sys
import time
import urllib.parse

BASE, VALUE, COUNT, TIMEOUT, INTERVAL = sys.argv[1], *(int(value) for value in sys.argv[2:6])
RESOLVE = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None
URL = urllib.parse.urlsplit(BASE)
DEADLINE = time.monotonic() + TIMEOUT
RETRIED = {0, 502, 503, 504}
jobs: dict = {}


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to RESOLVE_ADDRESS, with the certificate checked against the URL's host name."""

    def connect(self) -> None:
        sock = socket.create_connection((RESOLVE, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=URL.hostname)


def _connection() -> http.client.HTTPConnection:
    port = URL.port or (443 if URL.scheme == "https" else 80)
    if URL.scheme == "https":
        context = ssl.create_default_context()
        if RESOLVE:
            return _PinnedHTTPS(URL.hostname, port, timeout=5, context=context)
        return http.client.HTTPSConnection(URL.hostname, port, timeout=5, context=context)
    return http.client.HTTPConnection(RESOLVE or URL.hostname, port, timeout=5)


def call(method: str, path: str, body: object = None) -> tuple:
    """(HTTP status, parsed JSON body or None); status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Host": URL.netloc}
    connection = _connection()
    try:
        connection.request(method, URL.path.rstrip("/") + path, body=data, headers=headers)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, None
    finally:
        connection.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def finish(ok: bool, message: str) -> None:
    print(json.dumps({"ok": ok, "message": message, "jobs": jobs}))
    sys.exit(0 if ok else 1)


def submit() -> str:
    """POST /jobs until it is accepted; the job_id."""
    while True:
        status, body = call("POST", "/jobs", {"type": "integer", "value": VALUE})
        if status == 202 and isinstance(body, dict) and "job_id" in body:
            return str(body["job_id"])
        if status not in RETRIED or time.monotonic() > DEADLINE:
            finish(False, f"POST {BASE}/jobs answered {status or 'nothing'} {json.dumps(body)}, expected 202 with a job_id")
        time.sleep(INTERVAL)


for _ in range(COUNT):
    jobs[submit()] = {"status": "pending", "engine": None}

while True:
    for job_id, job in jobs.items():
        if job["status"] == "pending":
            status, body = call("GET", f"/jobs/{job_id}")
            if status == 200 and isinstance(body, dict):
                job["status"] = str(body.get("status", "pending"))
                result = body.get("result") if isinstance(body.get("result"), dict) else {}
                job["engine"] = result.get("engine")
    ended = {job_id: job for job_id, job in jobs.items() if job["status"] != "pending"}
    bad = {job_id: job["status"] for job_id, job in ended.items() if job["status"] != "succeeded"}
    if bad:
        finish(False, f"{len(bad)} of {COUNT} jobs through {BASE} ended without success: {json.dumps(bad)}")
    if len(ended) == COUNT:
        finish(True, f"{COUNT} of {COUNT} jobs through {BASE} succeeded")
    if time.monotonic() > DEADLINE:
        finish(False, f"{COUNT - len(ended)} of {COUNT} jobs through {BASE} had no result within {TIMEOUT} s "
                      "(are the engines running and connected?)")
    time.sleep(INTERVAL)
