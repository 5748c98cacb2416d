"""jobstack smoke test, run inside a user_interface container with `python -c`.

Arguments: http_port job_value job_count timeout_seconds poll_interval_seconds.
Waits until /readyz answers 200, submits job_count integer jobs to POST /jobs, then polls
GET /jobs/<id> until each is no longer pending, all within timeout_seconds. Prints one JSON line
{"ok", "message", "jobs"} and exits 0 only when every job succeeded. Standard library only, so it
runs in the service image as is.
"""
import json
import sys
import time
import urllib.error
import urllib.request

PORT, VALUE, COUNT, TIMEOUT, INTERVAL = (int(argument) for argument in sys.argv[1:6])
BASE = f"http://127.0.0.1:{PORT}"
DEADLINE = time.monotonic() + TIMEOUT
jobs = {}


def call(method, path, body=None):
    """Return (HTTP status, parsed JSON body or None); status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError:
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def finish(ok, message):
    print(json.dumps({"ok": ok, "message": message, "jobs": jobs}))
    sys.exit(0 if ok else 1)


while call("GET", "/readyz")[0] != 200:
    if time.monotonic() > DEADLINE:
        finish(False, f"the user interface did not answer 200 on /readyz within {TIMEOUT} s "
                      "(is it connected to RabbitMQ?)")
    time.sleep(INTERVAL)

for _ in range(COUNT):
    status, body = call("POST", "/jobs", {"type": "integer", "value": VALUE})
    if status != 202 or not isinstance(body, dict) or "job_id" not in body:
        finish(False, f"POST /jobs answered {status} {json.dumps(body)}, expected 202 with a job_id")
    jobs[body["job_id"]] = "pending"

while True:
    for job_id, state in list(jobs.items()):
        if state == "pending":
            status, body = call("GET", f"/jobs/{job_id}")
            if status == 200 and isinstance(body, dict):
                jobs[job_id] = str(body.get("status", "pending"))
    ended = {job_id: state for job_id, state in jobs.items() if state != "pending"}
    bad = {job_id: state for job_id, state in ended.items() if state != "succeeded"}
    if bad:
        finish(False, f"{len(bad)} of {COUNT} jobs ended without success: {json.dumps(bad)}")
    if len(ended) == COUNT:
        finish(True, f"{COUNT} of {COUNT} jobs succeeded")
    if time.monotonic() > DEADLINE:
        finish(False, f"{COUNT - len(ended)} of {COUNT} jobs had no result within {TIMEOUT} s "
                      "(are the engines running and connected?)")
    time.sleep(INTERVAL)
