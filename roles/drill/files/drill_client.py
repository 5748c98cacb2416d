"""Chaos drill client: steady job submissions through the public API, then the drill's figures.

  drill_client.py run --api URL [--poll URL ...] --rate R --duration S --settle S --value V --out FILE
      Submits R jobs a second for S seconds (POST /jobs), each in its own thread so that a slow
      answer never slows the rate, and polls GET /jobs/<id> round-robin over the --poll URLs (any UI
      replica answers) until every accepted job has finished or --settle seconds passed after the
      last submission. Then it reads every finished job once more: a result that changed means the
      job ran twice. Writes every submission to FILE (JSON).
  drill_client.py report --run FILE --faults FILE --out FILE
      The figures: submitted, accepted, refused (503, 429 or no answer: the API said no, nothing is
      lost), errors (any other answer), succeeded, failed, lost (202 and never finished), duplicates,
      time to recover and worst latency. Prints them, writes them as JSON; exit 0.

Standard library only: it runs with the control node's Python. Times are epoch seconds, the clock
the playbook stamps its faults with.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REFUSED = {429, 503}
ACCEPTED = 202
POLL_PAUSE = 0.5
REQUEST_TIMEOUT = 15.0


@dataclass
class Submission:
    seq: int
    submitted_at: float
    answered_at: float | None = None
    http_status: int = 0
    job_id: str | None = None
    error: str | None = None
    finished_at: float | None = None
    status: str | None = None
    engine: str | None = None
    first_result: dict[str, Any] | None = None
    ran_twice: bool = False
    polls: int = 0
    poll_codes: dict[str, int] = field(default_factory=dict)


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any, str | None]:
    """(HTTP status or 0, parsed JSON body or None, error text)."""
    data = None if body is None else json.dumps(body).encode()
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http(s) only, above
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310 - http(s) only
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:
        return 0, None, f"{type(error).__name__}: {error}"
    try:
        return status, json.loads(raw), None
    except ValueError:
        return status, None, None


def submit(api: str, submission: Submission, value: int) -> None:
    status, body, error = call("POST", f"{api}/jobs", {"type": "integer", "value": value})
    submission.answered_at = time.time()
    submission.http_status, submission.error = status, error
    if isinstance(body, dict) and isinstance(body.get("job_id"), str):
        # A 503 after the submit timeout carries the job_id too: the broker may still take the job.
        submission.job_id = body["job_id"]
    if status not in (ACCEPTED, *REFUSED) and error is None:
        submission.error = f"unexpected answer {status}: {json.dumps(body)[:300]}"


def poll_once(polls: itertools.cycle, submission: Submission) -> None:
    status, body, _ = call("GET", f"{next(polls)}/jobs/{submission.job_id}")
    submission.polls += 1
    submission.poll_codes[str(status)] = submission.poll_codes.get(str(status), 0) + 1
    if status == 200 and isinstance(body, dict) and body.get("status") not in (None, "pending"):
        result = body.get("result") if isinstance(body.get("result"), dict) else {}
        if submission.first_result is None:
            submission.finished_at = time.time()
            submission.status = str(body.get("status"))
            submission.engine = result.get("engine")
            submission.first_result = result
        elif result and result != submission.first_result:
            submission.ran_twice = True


def run(args: argparse.Namespace) -> int:
    api = args.api.rstrip("/")
    polls = itertools.cycle([url.rstrip("/") for url in (args.poll or [api])])
    submissions: list[Submission] = []
    lock = threading.Lock()
    done = threading.Event()

    def poller() -> None:
        while True:
            with lock:
                open_jobs = [s for s in submissions if s.job_id and s.first_result is None]
            for submission in open_jobs:
                poll_once(polls, submission)
            if done.is_set() and not open_jobs:
                return
            if done.is_set() and time.time() > done_at + args.settle:
                return
            time.sleep(POLL_PAUSE)

    done_at = float("inf")
    started = time.time()
    poll_thread = threading.Thread(target=poller, daemon=True)
    poll_thread.start()
    total = int(args.rate * args.duration)
    with ThreadPoolExecutor(max_workers=64) as pool:
        for seq in range(total):
            due = started + seq / args.rate
            time.sleep(max(0.0, due - time.time()))
            submission = Submission(seq=seq, submitted_at=time.time())
            with lock:
                submissions.append(submission)
            pool.submit(submit, api, submission, args.value)
    done_at = time.time()
    done.set()
    poll_thread.join()
    # Read every finished job once more: a changed result means that the job ran again.
    for submission in submissions:
        if submission.first_result is not None:
            poll_once(polls, submission)
    record = {
        "api": api,
        "polled": sorted({url.rstrip("/") for url in (args.poll or [api])}),
        "rate": args.rate,
        "duration": args.duration,
        "settle": args.settle,
        "started_at": started,
        "submissions_ended_at": done_at,
        "ended_at": time.time(),
        "submissions": [asdict(submission) for submission in submissions],
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


def epoch(value: Any) -> float | None:
    """Epoch seconds from a number, Ansible's local 'YYYY-mm-dd HH:MM:SS.ffffff' or Docker's RFC 3339."""
    if value is None or isinstance(value, int | float):
        return value
    text = str(value).strip()
    if text.endswith("Z"):
        # Docker writes nanoseconds; datetime takes microseconds.
        head, _, fraction = text[:-1].partition(".")
        moment = datetime.strptime(f"{head}.{(fraction or '0')[:6]}", "%Y-%m-%dT%H:%M:%S.%f")
        return moment.replace(tzinfo=UTC).timestamp()
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def back_at(fault: dict[str, Any]) -> float | None:
    """When a killed component was back: given, or the first passing healthcheck after its restart."""
    if fault.get("recovered_at") is not None:
        return epoch(fault["recovered_at"])
    state = fault.get("docker_state") or {}
    started = epoch(state.get("StartedAt"))
    checks = (state.get("Health") or {}).get("Log") or []
    passed = [epoch(check.get("End")) for check in checks if check.get("ExitCode") == 0]
    passed = [moment for moment in passed if moment is not None and started is not None and moment >= started]
    if passed:
        return min(passed)
    return started if state.get("Running") and not state.get("Health") else None


def figures(record: dict[str, Any], faults: list[dict[str, Any]]) -> dict[str, Any]:
    """The drill's figures from the client's record and the playbook's faults."""
    submissions = record["submissions"]
    faults = [{**fault, "killed_at": epoch(fault["killed_at"]), "recovered_at": back_at(fault)} for fault in faults]
    accepted = [s for s in submissions if s["http_status"] == ACCEPTED and s["job_id"]]
    refused = [s for s in submissions if s["http_status"] in REFUSED or s["http_status"] == 0]
    errors = [s for s in submissions if s["http_status"] not in (ACCEPTED, 0, *REFUSED)]
    finished = [s for s in accepted if s["first_result"] is not None]
    lost = [s for s in accepted if s["first_result"] is None]
    ids = [s["job_id"] for s in accepted]
    duplicate_ids = len(ids) - len(set(ids))
    latencies = sorted(s["finished_at"] - s["submitted_at"] for s in finished)
    first_fault = min((f["killed_at"] for f in faults), default=None)
    # Recovered: from the first fault to the first submission from which on every submission was
    # accepted and succeeded.
    recovery = None
    if first_fault is not None:
        after = [s for s in submissions if s["submitted_at"] >= first_fault]
        bad = [s for s in after if not (s["http_status"] == ACCEPTED and s["status"] == "succeeded")]
        if not bad:
            recovery = 0.0
        else:
            later = [s for s in after if s["submitted_at"] > bad[-1]["submitted_at"]]
            recovery = (later[0]["submitted_at"] - first_fault) if later else None
    return {
        "submitted": len(submissions),
        "accepted": len(accepted),
        "refused": len(refused),
        "refused_then_ran": sum(1 for s in refused if s["first_result"] is not None),
        "errors": len(errors),
        "succeeded": sum(1 for s in finished if s["status"] == "succeeded"),
        "failed": sum(1 for s in finished if s["status"] != "succeeded"),
        "lost": len(lost),
        "lost_job_ids": [s["job_id"] for s in lost][:50],
        "duplicates": duplicate_ids + sum(1 for s in finished if s["ran_twice"]),
        "engines": sorted({s["engine"] for s in finished if s["engine"]}),
        "recovery_seconds": None if recovery is None else round(recovery, 2),
        "worst_latency_seconds": round(latencies[-1], 2) if latencies else None,
        "median_latency_seconds": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "faults": [
            {
                "component": fault["component"],
                "target": fault["target"],
                "killed_at": fault["killed_at"],
                "back_after_seconds": round(fault["recovered_at"] - fault["killed_at"], 2)
                if fault["recovered_at"] is not None
                else None,
            }
            for fault in faults
        ],
        "error_samples": sorted({s["error"] for s in errors if s["error"]})[:5],
    }


def text(summary: dict[str, Any]) -> str:
    lines = [
        f"submitted {summary['submitted']}, accepted {summary['accepted']}, refused {summary['refused']} "
        f"(503/429/no answer; {summary['refused_then_ran']} of them ran anyway), errors {summary['errors']}",
        f"succeeded {summary['succeeded']}, failed {summary['failed']}, LOST {summary['lost']}, "
        f"duplicates {summary['duplicates']}, engines {', '.join(summary['engines']) or 'none'}",
        f"time to recover {summary['recovery_seconds']} s (first fault to the first submission from which on all "
        f"succeeded), worst latency {summary['worst_latency_seconds']} s, median {summary['median_latency_seconds']} s",
    ]
    for fault in summary["faults"]:
        lines.append(
            f"fault: {fault['component']} {fault['target']} killed, back healthy after {fault['back_after_seconds']} s"
        )
    return "\n".join(lines)


def report(args: argparse.Namespace) -> int:
    record = json.loads(Path(args.run).read_text())
    faults = json.loads(Path(args.faults).read_text()) if args.faults else []
    summary = figures(record, faults)
    Path(args.out).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(text(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--api", required=True)
    run_parser.add_argument("--poll", action="append")
    run_parser.add_argument("--rate", type=float, required=True)
    run_parser.add_argument("--duration", type=float, required=True)
    run_parser.add_argument("--settle", type=float, required=True)
    run_parser.add_argument("--value", type=int, default=0)
    run_parser.add_argument("--out", required=True)
    report_parser = commands.add_parser("report")
    report_parser.add_argument("--run", required=True)
    report_parser.add_argument("--faults")
    report_parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "run" and (args.rate <= 0 or args.duration <= 0 or args.settle < 0):
        parser.error("--rate and --duration must be positive and --settle not negative")
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
