"""Every metric an alert or a dashboard query reads is exported by a running engine, UI or RabbitMQ.

One private RabbitMQ (Debian's 3.10 with rabbitmq_prometheus), one engine and one user_interface
run for the whole module. A job goes through, an invalid job is dead-lettered, then each is
scraped the way Prometheus will scrape them in production.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest

from tools.rabbitmq_local import Broker, free_port

from ..services.processes import Service, wait_for
from .queries import alert_rules, dashboard_queries, metric_names

# What the RabbitMQ monitor must scrape: node metrics, and per-queue metrics the way RabbitMQ
# recommends for them (the detailed endpoint; /metrics/per-object costs more and repeats the names
# of the aggregated endpoint with other labels).
BROKER_PATHS = (
    "/metrics",
    "/metrics/detailed?family=queue_coarse_metrics&family=queue_metrics&family=ra_metrics",
)

# Names no process here can export, each with the reason.
EXTERNAL = {
    "kube_pod_container_status_restarts_total": "kube-state-metrics, on Kubernetes only",
    "kube_pod_container_status_waiting_reason": "kube-state-metrics, on Kubernetes only",
    "kube_statefulset_replicas": "kube-state-metrics, on Kubernetes only",
}
# A RabbitMQ 4.2+ name -> the name of the same series on the 3.10 here, which the same expression
# must also read (so the rule works on both).
NEWER_RABBITMQ = {"rabbitmq_detailed_raft_term": "rabbitmq_detailed_raft_term_total"}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_names(exposition: str) -> set[str]:
    """Series names in a Prometheus text exposition: sampled ones, and those a `# TYPE` line declares
    (a labelled counter has no sample before its first increment, yet PromQL will find it then)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


class PrometheusBroker(Broker):
    """The private test node, with the rabbitmq_prometheus plugin on a free loopback port."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.prometheus_port = free_port()
        (base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
        with open(base / "rabbitmq.conf", "a") as config:
            config.write(f"prometheus.tcp.port = {self.prometheus_port}\nprometheus.tcp.ip = 127.0.0.1\n")

    def scrape(self, path: str) -> str:
        return scrape(f"http://127.0.0.1:{self.prometheus_port}{path}")


@dataclass
class Stack:
    broker: PrometheusBroker
    engine: Service
    ui: Service

    def exported(self) -> dict[str, set[str]]:
        """Metric names per source, as scraped now."""
        sources = {f"rabbitmq {path}": self.broker.scrape(path) for path in BROKER_PATHS}
        sources["engine /metrics"] = self.engine.get("/metrics")[1]
        sources["user_interface /metrics"] = self.ui.get("/metrics")[1]
        return {source: exported_names(text) for source, text in sources.items()}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    broker = PrometheusBroker(tmp_path_factory.mktemp("rabbitmq-prometheus"))
    broker.start()
    logs = tmp_path_factory.mktemp("service-logs")
    engine = Service("engine", broker.url(), logs)
    ui = Service("user_interface", broker.url(), logs)
    try:
        engine.start()
        ui.start()
        run_jobs(broker, engine, ui)
        yield Stack(broker, engine, ui)
    finally:
        ui.stop()
        engine.stop()
        broker.cleanup()


def run_jobs(broker: PrometheusBroker, engine: Service, ui: Service) -> None:
    """A job that succeeds and one the engine dead-letters, so histograms and labelled counters exist."""
    status, body = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
    assert status == 202, body
    job_id = body["job_id"]
    wait_for(lambda: ui.get(f"/jobs/{job_id}")[1].get("status") == "succeeded", message=f"result of {job_id}")
    connection = pika.BlockingConnection(pika.URLParameters(broker.url()))
    try:
        connection.channel().basic_publish("job-exchange", "job", b"not a job")
    finally:
        connection.close()
    wait_for(
        lambda: engine.metric("jobstack_engine_dead_lettered_total", 'reason="invalid"') == 1,
        message="the engine to dead-letter the invalid job",
    )
    # The broker publishes queue statistics every few seconds: wait until they show the dead letter.
    wait_for(
        lambda: 'queue="jobstack.jobs.dead"} 1' in broker.scrape(BROKER_PATHS[1]),
        timeout=60,
        interval=1,
        message="RabbitMQ's statistics of jobstack.jobs.dead",
    )


def missing_names(stack: Stack, queries: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Per query, the names it reads that nothing exports."""
    exported = set().union(*stack.exported().values())
    missing: dict[str, list[str]] = {}
    for where, expr in queries:
        names = metric_names(expr)
        unknown = sorted(names - exported - set(EXTERNAL) - set(NEWER_RABBITMQ))
        unknown += [
            f"{newer} (its 3.10 name {older} is not read by the same query)"
            for newer, older in NEWER_RABBITMQ.items()
            if newer in names and older not in names
        ]
        if unknown:
            missing[where] = unknown
    return missing


def alert_queries() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules() if "alert" in rule]


def report(missing: dict[str, list[str]]) -> str:
    return "not exported by the engine, the user_interface or RabbitMQ:\n" + "\n".join(
        f"  {where}: {', '.join(names)}" for where, names in missing.items()
    )


def test_every_metric_an_alert_reads_is_exported(stack: Stack) -> None:
    missing = missing_names(stack, alert_queries())
    assert not missing, report(missing)


def test_every_metric_a_dashboard_query_reads_is_exported(stack: Stack) -> None:
    missing = missing_names(stack, dashboard_queries())
    assert not missing, report(missing)


def test_the_names_allowed_without_an_exporter_are_used_and_not_exported_here(stack: Stack) -> None:
    used = set().union(*(metric_names(expr) for _, expr in alert_queries() + dashboard_queries()))
    exported = set().union(*stack.exported().values())
    assert set(EXTERNAL) - used == set(), "stale entries in EXTERNAL"
    assert set(NEWER_RABBITMQ) - used == set(), "stale entries in NEWER_RABBITMQ"
    assert (set(EXTERNAL) | set(NEWER_RABBITMQ)) & exported == set(), "exported here after all: not external"
    assert set(NEWER_RABBITMQ.values()) <= exported


def test_exported_names_reads_samples_declarations_and_histogram_series() -> None:
    exposition = (
        "# HELP a_total Counted.\n# TYPE a_total counter\n"
        '# TYPE b_seconds histogram\nb_seconds_bucket{le="+Inf"} 1.0\n'
        'c{queue="x y"} 3\nd 4 1700000000\n'
    )
    assert exported_names(exposition) == {
        "a_total",
        "b_seconds",
        "b_seconds_bucket",
        "b_seconds_sum",
        "b_seconds_count",
        "c",
        "d",
    }
