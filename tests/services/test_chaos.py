"""Chaos with real processes: two UIs and two engines on one broker while everything goes wrong.

Jobs are submitted over HTTP the whole time while the test SIGKILLs an engine, restarts the broker,
pauses a UI (SIGSTOP) across a second broker restart, and cuts an engine's network to the broker
for several seconds (a black-holing TCP proxy). Then: every job that got 202 reaches exactly one
final state, the same on either UI, and the dead-letter queue holds only the invalid jobs.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import threading
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika

from tools.rabbitmq_local import Broker

from .broker_admin import Admin
from .faulty_proxy import FaultyProxy
from .processes import Service, wait_for

INVALID_JOBS = [b"not json", b'{"job_id": "x"}', b'{"job_id": "0b7f6c43-3c4b-4c39-9c55-7a4f0c7f2f11"}']


class Load:
    """Submits valid jobs to the UIs in turn from a thread, remembering every 202."""

    def __init__(self, uis: list[Service]) -> None:
        self.uis = uis
        self.accepted: list[str] = []
        self.answers: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            ui = self.uis[turn % len(self.uis)]
            turn += 1
            body = json.dumps({"type": "integer", "value": random.choice([0, 0, 1])}).encode()
            try:
                status, _headers, answer = ui.raw_request("POST", "/jobs", body)
            except (urllib.error.URLError, OSError, TimeoutError):
                self.answers["no answer"] += 1
                continue
            self.answers[str(status)] += 1
            if status == 202:
                self.accepted.append(answer["job_id"])
            time.sleep(0.05)


def publish_invalid_jobs(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    for body in INVALID_JOBS:
        channel.basic_publish("job-exchange", "job", body, mandatory=True)
    connection.close()


def test_every_accepted_job_ends_once_through_kills_restarts_pauses_and_cuts(
    own_broker: Broker, services: Callable[..., Service], tmp_path: Path
) -> None:
    url = own_broker.url()
    proxy = FaultyProxy(own_broker.amqp_port)
    proxied_url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    common = {"heartbeat": 2, "prefetch": 5}
    engine_a = services("engine", url, instance_id="engine-a", **common)
    services("engine", proxied_url, instance_id="engine-b", **common)
    ui_a = services("user_interface", url, instance_id="ui-a", heartbeat=2, submit_timeout=3)
    ui_b = services("user_interface", url, instance_id="ui-b", heartbeat=2, submit_timeout=3)
    publish_invalid_jobs(url)
    try:
        with Load([ui_a, ui_b]) as load:
            time.sleep(2)
            engine_a.kill()  # SIGKILL mid-work
            time.sleep(1)
            services("engine", url, instance_id="engine-a2", **common)
            time.sleep(2)
            own_broker.restart()
            time.sleep(3)
            ui_b.signal(signal.SIGSTOP)  # paused across the next restart
            own_broker.restart()
            time.sleep(2)
            ui_b.signal(signal.SIGCONT)
            time.sleep(3)
            proxy.cut(6)  # engine-b's network is gone for 6 s
            time.sleep(3)
    finally:
        ui_b.signal(signal.SIGCONT)
    for ui in (ui_a, ui_b):
        ui.wait_ready(timeout=90)

    def final(ui: Service, job_id: str) -> str | None:
        status, body = ui.get(f"/jobs/{job_id}")
        return body["status"] if status == 200 and body["status"] != "pending" else None

    states: dict[str, tuple[str | None, str | None]] = {}

    def all_final() -> bool:
        for job_id in load.accepted:
            if job_id not in states or None in states[job_id]:
                states[job_id] = (final(ui_a, job_id), final(ui_b, job_id))
        return all(None not in state for state in states.values())

    try:
        wait_for(all_final, timeout=180, interval=1, message="every accepted job to be final on both UIs")
    except AssertionError as timed_out:
        # Name the jobs that are not final, with what each UI answers, and where their logs are.
        open_jobs = {job_id: state for job_id, state in states.items() if None in state}
        answers = {job_id: (ui_a.get(f"/jobs/{job_id}"), ui_b.get(f"/jobs/{job_id}")) for job_id in list(open_jobs)[:5]}
        raise AssertionError(f"{timed_out}: {len(open_jobs)} not final, e.g. {answers}; logs in {tmp_path}") from None
    outcomes = collections.Counter(state for state, _ in states.values())
    admin = Admin(own_broker, "/")
    dead = admin.wait_queue("jobstack.jobs.dead", lambda q: q["messages"] >= len(INVALID_JOBS))
    print(
        f"\nchaos: {len(load.accepted)} accepted (202), answers {dict(load.answers)}, "
        f"final states {dict(outcomes)}, dead letters {dead['messages']} (invalid jobs sent {len(INVALID_JOBS)})"
    )
    assert len(load.accepted) >= 50 and len(set(load.accepted)) == len(load.accepted)
    assert all(a == b for a, b in states.values()), "the two UIs disagree about a job"
    assert outcomes == {"succeeded": len(load.accepted)}
    # Only the invalid jobs were dead-lettered: nothing for a delivery limit or an unroutable result.
    assert dead["messages"] == len(INVALID_JOBS)
    reasons = _dead_letter_reasons(url)
    assert all(not r.startswith(("delivery-limit", "result unroutable")) for r in reasons), reasons


def _dead_letter_reasons(url: str) -> list[str]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    reasons: list[Any] = []
    while True:
        method, properties, _body = channel.basic_get("jobstack.jobs.dead", auto_ack=False)
        if method is None:
            break
        reasons.append(properties.headers["x-jobstack-reason"])
    connection.close()
    return reasons
