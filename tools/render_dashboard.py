"""Render the Grafana dashboard from real data: python -m tools.render_dashboard [--seconds N] [--output PNG]

There is no Grafana here, so this script shows what the dashboard would show. It starts, on
loopback and free ports, a private RabbitMQ node with rabbitmq_prometheus, per region two engines
and a user_interface, and a Prometheus server that scrapes them every second with the `region`
and `cluster` labels the ServiceMonitors add on Kubernetes. It drives a short, varied load through
the UI's HTTP API (valid and invalid jobs, invalid jobs published straight to `job-exchange`, a
burst while an engine is paused with SIGSTOP, a broker connection closed under an engine). Then it
evaluates every panel's queries with Prometheus' `/api/v1/query_range` over the run, draws the
panels in the dashboard's own grid as one self-contained HTML page of inline SVG charts, and
screenshots that page with Debian's Chromium.

The fake regions share the one broker node: each region has its own vhost, and the per-queue
metrics are scraped per vhost, so each region sees its own queues. Node metrics (alarms) are the
node's, in both regions.

It prints how many series and points each query returned, and exits 1 when a query returned no
series with a finite value: a panel that shows nothing against real services is a broken panel.
Every process it starts is stopped on every way out (end, error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pika

from tools import chromium
from tools.build_dashboard import OUTPUT as DASHBOARD
from tools.rabbitmq_local import Broker, free_port, stop_epmd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "build" / "dashboard" / "dashboard.png"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

SCRAPE_SECONDS = 1.0
# The detailed endpoint as the RabbitMQ monitor scrapes it (roles/monitoring/README.md), per vhost.
BROKER_FAMILIES = ["queue_coarse_metrics", "queue_metrics", "ra_metrics"]
REGIONS = [("region-1", "local-1"), ("region-2", "local-2")]
ENGINES_PER_REGION = 2
# Low, so that two engines of one-second jobs fall behind a burst and the backlog shows.
ENGINE_PREFETCH = 2
BURST_JOBS = 20

# Grafana's grid: 24 columns, rows of 30 px with 8 px between them.
PAGE_WIDTH = 1440
GRID_COLUMNS = 24
CELL_HEIGHT, CELL_MARGIN = 30, 8
HEADER_HEIGHT = 56
PAGE_PADDING = 8
FONT_SIZE = 11
# DejaVu Sans (Debian's default sans font) averages about 0.62 em per character.
CHAR_WIDTH = FONT_SIZE * 0.62
# Grafana's classic palette.
COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0"]
COLORS += ["#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477"]

Log = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


def http_request(url: str, method: str = "GET", body: object | None = None, timeout: float = 15) -> tuple[int, Any]:
    """(status, JSON or text) of a request to a server this script started on loopback."""
    data = None if body is None else json.dumps(body).encode()
    # Only URLs of the servers started here reach this (http://127.0.0.1:<port>), never a file: URL.
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if predicate():
                return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- The stack ---------------------------------------------------------------------------------


class MetricsBroker(Broker):
    """A private node with rabbitmq_prometheus on a free loopback port, and queue statistics every
    second (the default 5 s would make the backlog panels lag the load by several scrapes)."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.prometheus_port = free_port()
        (base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
        with open(base / "rabbitmq.conf", "a") as config:
            config.write(
                f"prometheus.tcp.port = {self.prometheus_port}\nprometheus.tcp.ip = 127.0.0.1\n"
                "collect_statistics_interval = 1000\n"
            )

    def kill(self) -> None:
        """Kill the node outright: its data is thrown away next, so a graceful stop would only cost seconds."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
            stop_epmd(self.env)

    def close_connection(self, client_name: str, timeout: float = 15) -> None:
        """Close the broker side of the connection a client named client_name (as `rabbitmqctl close_connection`)."""
        found: list[str] = []

        def listed() -> bool:
            connections = self.api("GET", "/api/connections?columns=name,client_properties")
            assert isinstance(connections, list)
            found[:] = [
                item["name"]
                for item in connections
                if item.get("client_properties", {}).get("connection_name") == client_name
            ]
            return bool(found)

        wait_until(listed, timeout, f"the broker to list the connection of {client_name}", interval=0.5)
        for name in found:
            self.api("DELETE", "/api/connections/" + urllib.parse.quote(name, safe=""))


@dataclasses.dataclass
class ServiceProcess:
    """One engine or user_interface, run from this checkout the way its image runs it."""

    kind: str  # "engine" or "user_interface"
    region: str
    instance_id: str
    amqp_url: str
    log_dir: Path
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    http_port: int = dataclasses.field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.instance_id}.log"

    def start(self) -> None:
        prefix = self.kind.upper()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "services"), os.environ.get("PYTHONPATH", "")])),
            "AMQP_URL": self.amqp_url,
            f"{prefix}_HTTP_PORT": str(self.http_port),
            f"{prefix}_HTTP_ADDRESS": "127.0.0.1",
            f"{prefix}_INSTANCE_ID": self.instance_id,
            # Its jobs are thrown away at the end: no reason to wait for them.
            f"{prefix}_SHUTDOWN_GRACE_SECONDS": "1",
            **{f"{prefix}_{key.upper()}": value for key, value in self.settings.items()},
        }
        script = ROOT / "services" / self.kind / f"{self.kind}.py"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.instance_id} exited with {self.process.returncode}:\n{tail}")
            return http_request(self.base_url + "/readyz", timeout=2)[0] == 200

        wait_until(ready, timeout, f"{self.instance_id} to be ready")

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.process.terminate()

    def wait_stopped(self, timeout: float = 10) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop_services(services: list[ServiceProcess]) -> None:
    """SIGTERM to all first, then wait for each: they shut down side by side."""
    for service in services:
        service.terminate()
    for service in services:
        service.wait_stopped()


@dataclasses.dataclass
class Region:
    name: str
    cluster: str
    amqp_url: str
    engines: list[ServiceProcess]
    ui: ServiceProcess

    @property
    def services(self) -> list[ServiceProcess]:
        return [*self.engines, self.ui]


def prometheus_config(broker: MetricsBroker, regions: list[Region]) -> dict[str, Any]:
    """Scrape jobs as the monitors would: each target with its region and cluster labels."""

    def static(targets: list[str], region: Region) -> dict[str, Any]:
        return {"targets": targets, "labels": {"region": region.name, "cluster": region.cluster}}

    broker_target = [f"127.0.0.1:{broker.prometheus_port}"]
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "engine",
            "static_configs": [
                static([f"127.0.0.1:{engine.http_port}" for engine in region.engines], region) for region in regions
            ],
        },
        {
            "job_name": "user_interface",
            "static_configs": [static([f"127.0.0.1:{region.ui.http_port}"], region) for region in regions],
        },
        {"job_name": "rabbitmq", "static_configs": [static(broker_target, region) for region in regions]},
    ]
    # Query parameters belong to a scrape job, so each region's vhost gets a job of its own.
    jobs += [
        {
            "job_name": f"rabbitmq-detailed-{region.name}",
            "metrics_path": "/metrics/detailed",
            "params": {"family": BROKER_FAMILIES, "vhost": [region.name]},
            "static_configs": [static(broker_target, region)],
        }
        for region in regions
    ]
    interval = f"{SCRAPE_SECONDS:g}s"
    return {"global": {"scrape_interval": interval, "scrape_timeout": interval}, "scrape_configs": jobs}


class PrometheusServer:
    def __init__(self, base: Path, config: dict[str, Any]) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # JSON is YAML: no YAML library needed to write the configuration.
        (base / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            PROMETHEUS,
            f"--config.file={self.base / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.base / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with open(self.base / "prometheus.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)

    def log_tail(self) -> str:
        return (self.base / "prometheus.log").read_text(errors="replace")[-2000:]

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            return http_request(self.url + "/-/ready", timeout=2)[0] == 200

        wait_until(ready, timeout, "prometheus to be ready")

    def wait_targets_up(self, expected: int, timeout: float = 60) -> None:
        """Until every target has been scraped successfully, or an error naming the ones that were not."""
        health: dict[str, str] = {}

        def all_up() -> bool:
            _, answer = http_request(self.url + "/api/v1/targets?state=active", timeout=5)
            health.clear()
            for target in answer["data"]["activeTargets"]:
                # The broker's node metrics are one URL scraped once per region: the labels tell them apart.
                name = f"{target['labels']['job']} {target['scrapeUrl']} region={target['labels'].get('region')}"
                health[name] = f"{target['health']} {target.get('lastError', '')}".strip()
            return len(health) == expected and all(state == "up" for state in health.values())

        try:
            wait_until(all_up, timeout, "every scrape target to be up", interval=0.5)
        except RuntimeError as error:
            known = "\n".join(f"  {name}: {state}" for name, state in sorted(health.items()))
            raise RuntimeError(f"{error}; {len(health)} of {expected} targets known:\n{known}") from None

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        status, answer = http_request(f"{self.url}/api/v1/query_range?{query}", timeout=30)
        if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ValueError(f"Prometheus refused the query (HTTP {status}): {error}\n  {expr}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_stack(
    stack: contextlib.ExitStack, base: Path, region_count: int, log: Log
) -> tuple[MetricsBroker, list[Region], PrometheusServer]:
    """Broker, services and Prometheus, each registered on `stack` to be stopped however we leave."""
    (base / "rabbitmq").mkdir()
    broker = MetricsBroker(base / "rabbitmq")
    stack.callback(broker.kill)
    broker.start()
    assert broker.process is not None
    log(f"started: rabbitmq pgid={broker.process.pid} epmd port {broker.epmd_port} amqp port {broker.amqp_port}")
    regions = []
    for name, cluster in REGIONS[:region_count]:
        url = broker.add_vhost(name)
        engines = [
            ServiceProcess("engine", name, f"{name}-engine-{number}", url, base, {"prefetch": str(ENGINE_PREFETCH)})
            for number in range(1, ENGINES_PER_REGION + 1)
        ]
        ui = ServiceProcess("user_interface", name, f"{name}-ui", url, base)
        regions.append(Region(name, cluster, url, engines, ui))
    services = [service for region in regions for service in region.services]
    stack.callback(stop_services, services)
    for service in services:
        service.start()
        assert service.process is not None
        log(f"started: {service.instance_id} pid={service.process.pid} http port {service.http_port}")
    prometheus = PrometheusServer(base, prometheus_config(broker, regions))
    stack.callback(prometheus.stop)
    prometheus.start()
    assert prometheus.process is not None
    log(f"started: prometheus pid={prometheus.process.pid} {prometheus.url}")
    for service in services:
        service.wait_ready()
    prometheus.wait_ready()
    # Per region: its engines, its UI, the broker's /metrics and the broker's detailed endpoint.
    prometheus.wait_targets_up(expected=len(services) + 2 * len(regions))
    return broker, regions, prometheus


# --- The load ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    """When things happen, as fractions of the run, so that a short run has every phase."""

    seconds: float
    long_job_at: float = 0.15
    pause_at: float = 0.35
    resume_at: float = 0.6
    # Soon after the resume, while the engines still work off the backlog: what it holds is redelivered.
    close_connection_at: float = 0.65

    @property
    def long_job_value(self) -> int:
        # Long enough to stand out in "Oldest delivery held", short enough to end within the run.
        return max(2, min(15, round(self.seconds * 0.25)))


class Load:
    """Steady traffic per region on threads; the scripted events on the caller's thread."""

    def __init__(self, broker: MetricsBroker, regions: list[Region], scenario: Scenario, log: Log) -> None:
        self.broker = broker
        self.regions = regions
        self.scenario = scenario
        self.log = log
        self.stop = threading.Event()
        self.answers: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.random = random.Random(7)

    def submit(self, region: Region, payload: object) -> None:
        try:
            status, _ = http_request(region.ui.base_url + "/jobs", "POST", payload)
            answer = str(status)
        except OSError as error:
            answer = type(error).__name__
        with self.lock:
            self.answers[f"{region.name} POST /jobs {answer}"] += 1

    def publish_invalid(self, region: Region, body: bytes) -> None:
        """A job no engine can run, straight to job-exchange as a client that skips the API would send it."""
        try:
            connection = pika.BlockingConnection(pika.URLParameters(region.amqp_url))
            try:
                connection.channel().basic_publish("job-exchange", "job", body)
            finally:
                connection.close()
            answer = "published"
        except pika.exceptions.AMQPError as error:
            answer = f"not published ({type(error).__name__})"
        with self.lock:
            self.answers[f"{region.name} invalid job {answer}"] += 1

    def steady(self, region: Region) -> None:
        """About two jobs a second, mostly instant; every few seconds a refused request and an invalid job."""
        turn = 0
        while not self.stop.is_set():
            turn += 1
            self.submit(region, {"type": "integer", "value": self.random.choice([0, 0, 1])})
            if turn % 6 == 0:
                self.submit(region, {"type": "integer", "value": -1})  # 400: out of range
            if turn % 6 == 3:
                # Alternately not JSON at all, and a well-formed job whose value is out of range.
                out_of_range = {"job_id": str(uuid.uuid4()), "job_payload": {"type": "integer", "value": 10**6}}
                self.publish_invalid(region, b"not a job" if turn % 12 == 3 else json.dumps(out_of_range).encode())
            self.stop.wait(0.5)

    def run(self) -> None:
        threads = [threading.Thread(target=self.steady, args=(region,), daemon=True) for region in self.regions]
        started = time.monotonic()
        for thread in threads:
            thread.start()

        def at(fraction: float) -> None:
            self.stop.wait(max(0.0, started + fraction * self.scenario.seconds - time.monotonic()))

        try:
            at(self.scenario.long_job_at)
            self.log(f"load: one job of {self.scenario.long_job_value} s per region")
            for region in self.regions:
                self.submit(region, {"type": "integer", "value": self.scenario.long_job_value})
            at(self.scenario.pause_at)
            self.log(f"load: SIGSTOP to the first engine of each region, a burst of {BURST_JOBS} one-second jobs")
            for region in self.regions:
                region.engines[0].pause()
            burst = [
                threading.Thread(target=self.submit, args=(region, {"type": "integer", "value": 1}), daemon=True)
                for region in self.regions
                for _ in range(BURST_JOBS)
            ]
            for thread in burst:
                thread.start()
            for thread in burst:
                thread.join()
            at(self.scenario.resume_at)
            self.log("load: SIGCONT to the paused engines")
            for region in self.regions:
                region.engines[0].resume()
            at(self.scenario.close_connection_at)
            self.log("load: the broker closes the connection of the last engine of each region")
            for region in self.regions:
                self.broker.close_connection(f"engine:{region.engines[-1].instance_id}")
            at(1.0)
        finally:
            for region in self.regions:
                region.engines[0].resume()
            self.stop.set()
            for thread in threads:
                thread.join(timeout=20)


# --- The queries -------------------------------------------------------------------------------


def rate_interval(step: float, scrape: float = SCRAPE_SECONDS) -> float:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(step + scrape, 4 * scrape)


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's variables ($name and ${name}); refuse a query that still has one we do not know."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}; known: {', '.join(sorted(values))}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def finite_points(series: dict[str, Any]) -> int:
    """Samples of one series that a chart can draw (NaN and ±Inf draw nothing)."""
    return sum(1 for _, value in series.get("values", []) if math.isfinite(float(value)))


def series_with_data(result: list[dict[str, Any]]) -> int:
    return sum(1 for series in result if finite_points(series) > 0)


@dataclasses.dataclass
class TargetData:
    ref_id: str
    expr: str
    legend_format: str
    result: list[dict[str, Any]]

    @property
    def series(self) -> int:
        return len(self.result)

    @property
    def series_with_data(self) -> int:
        return series_with_data(self.result)

    @property
    def points(self) -> int:
        return sum(finite_points(series) for series in self.result)


@dataclasses.dataclass
class PanelData:
    panel: dict[str, Any]
    targets: list[TargetData]

    @property
    def empty_targets(self) -> list[TargetData]:
        return [target for target in self.targets if target.series_with_data == 0]


def chart_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that draw queries (rows only group them)."""
    return [panel for panel in board["panels"] if panel.get("targets")]


def evaluate(
    board: dict[str, Any], prometheus: PrometheusServer, start: float, end: float, step: float
) -> list[PanelData]:
    variables = {
        "region": ".*",  # "All", as the dashboard opens
        "cluster": ".*",
        "datasource": "prometheus",
        "__rate_interval": f"{rate_interval(step):g}s",
        "__interval": f"{step:g}s",
        "__range": f"{round(end - start)}s",
    }
    panels = []
    for panel in chart_panels(board):
        targets = []
        for target in panel["targets"]:
            try:
                expr = substitute(target["expr"], variables)
                result = prometheus.query_range(expr, start, end, step)
            except ValueError as error:
                raise ValueError(f"panel {panel['id']} {panel['title']!r} query {target['refId']}: {error}") from None
            targets.append(TargetData(target["refId"], expr, target.get("legendFormat", ""), result))
        panels.append(PanelData(panel, targets))
    return panels


def summary(panels: list[PanelData]) -> list[str]:
    lines = []
    for data in panels:
        panel = data.panel
        lines.append(f"panel {panel['id']:>2} {panel['title']!r}")
        for target in data.targets:
            verdict = "" if target.series_with_data else "   <- NO DATA"
            lines.append(
                f"    {target.ref_id}: {target.series} series ({target.series_with_data} with data), "
                f"{target.points} points{verdict}"
            )
    return lines


def report(panels: list[PanelData], start: float, end: float, step: float) -> dict[str, Any]:
    return {
        "start": start,
        "end": end,
        "step": step,
        "panels": [
            {
                "id": data.panel["id"],
                "title": data.panel["title"],
                "targets": [
                    {
                        "refId": target.ref_id,
                        "expr": target.expr,
                        "series": target.series,
                        "series_with_data": target.series_with_data,
                        "points": target.points,
                    }
                    for target in data.targets
                ],
            }
            for data in panels
        ],
        "empty": [
            f"panel {data.panel['id']} {data.panel['title']!r} {target.ref_id}"
            for data in panels
            for target in data.empty_targets
        ],
    }


# --- The page ----------------------------------------------------------------------------------


def nice_step(span: float, ticks: int = 4) -> float:
    """A step of 1, 2 or 5 times 10^n that cuts span into about `ticks` parts."""
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(factor * magnitude for factor in (1, 2, 5, 10) if factor * magnitude >= raw)


def format_value(value: float, unit: str, step: float) -> str:
    """An axis label in the panel's Grafana unit, with as many decimals as the tick step needs."""
    if unit == "s" and step < 1:
        value, step, suffix = value * 1000, step * 1000, " ms"
    else:
        suffix = {"s": " s", "ops": " ops/s", "reqps": " req/s"}.get(unit, "")
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    if unit == "short" and value >= 1000:
        return f"{value / 1000:.{max(0, decimals - 3)}f}k"
    return f"{value:.{decimals}f}{suffix}"


def legend_of(legend_format: str, metric: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: metric.get(match.group(1), ""), legend_format).strip()
    return text or "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(metric.items())) + "}"


@dataclasses.dataclass
class Line:
    legend: str
    color: str
    points: list[tuple[float, float]]


def lines_of(data: PanelData) -> list[Line]:
    found = []
    for target in data.targets:
        for series in target.result:
            points = [(float(t), float(v)) for t, v in series["values"]]
            found.append((legend_of(target.legend_format, series["metric"]), points))
    found.sort(key=lambda item: item[0])
    return [Line(legend, COLORS[index % len(COLORS)], points) for index, (legend, points) in enumerate(found)]


def segments(points: list[tuple[float, float]], step: float) -> Iterator[list[tuple[float, float]]]:
    """Runs of finite points without a missing step: a gap in the data is a gap in the line."""
    run: list[tuple[float, float]] = []
    for t, value in points:
        if not math.isfinite(value) or (run and t - run[-1][0] > 1.5 * step):
            if run:
                yield run
            run = []
        if math.isfinite(value):
            run.append((t, value))
    if run:
        yield run


def legend_rows(entries: list[str], width: float) -> list[list[str]]:
    """Entries packed left to right into rows of the given width (text width estimated)."""
    rows: list[list[str]] = [[]]
    used = 0.0
    for entry in entries:
        size = 16 + len(entry) * CHAR_WIDTH + 12
        if rows[-1] and used + size > width:
            rows.append([])
            used = 0.0
        rows[-1].append(entry)
        used += size
    return rows if rows[0] else []


def chart_svg(data: PanelData, width: float, height: float, start: float, end: float, step: float) -> str:
    """One panel's body: axes, grid, one line per series (10% fill, as the panel's fieldConfig), legend."""
    defaults = data.panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    line_width = defaults.get("custom", {}).get("lineWidth", 1)
    fill_opacity = defaults.get("custom", {}).get("fillOpacity", 0) / 100
    lines = lines_of(data)
    missing = [f"{target.ref_id}: no data" for target in data.empty_targets]
    rows = legend_rows([line.legend for line in lines] + missing, width)
    max_rows = max(1, int(height * 0.4 // 15))
    hidden = sum(len(row) for row in rows[max_rows:])
    rows = rows[:max_rows]
    if hidden:
        rows[-1] = [*rows[-1], f"+{hidden} more"]
    legend_height = 15 * len(rows) + 4
    left, right, top, bottom = 70.0, 10.0, 6.0, 18.0
    plot_w, plot_h = width - left - right, height - top - bottom - legend_height
    peak = max((value for line in lines for _, value in line.points if math.isfinite(value)), default=0.0)
    peak = peak if peak > 0 else 1.0  # all zero: still an axis from 0 to 1, as Grafana draws it
    y_step = nice_step(peak)
    y_top = y_step * max(1, math.ceil(peak / y_step - 1e-9))

    def x_of(t: float) -> float:
        return left + (t - start) / (end - start) * plot_w

    def y_of(value: float) -> float:
        return top + plot_h - min(value, y_top) / y_top * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}">']
    for index in range(round(y_top / y_step) + 1):
        value = index * y_step
        y = y_of(value)
        out.append(f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        label = html.escape(format_value(value, unit, y_step))
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    x_step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if (end - start) / s <= 6), 3600)
    for t in range(math.ceil(start / x_step) * x_step, math.floor(end) + 1, x_step):
        x = x_of(t)
        if x - 28 < left or x + 28 > left + plot_w + right:
            continue  # its label would run into the value axis or out of the panel
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h:.1f}" class="grid"/>')
        clock = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 13:.1f}" text-anchor="middle">{clock}</text>')
    if not lines:
        out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" class="nodata">No data</text>')
    for line in lines:
        for run in segments(line.points, step):
            path = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in run)
            base = f"{x_of(run[-1][0]):.1f},{y_of(0):.1f} {x_of(run[0][0]):.1f},{y_of(0):.1f}"
            if fill_opacity:
                out.append(f'<polygon points="{path} {base}" fill="{line.color}" fill-opacity="{fill_opacity:g}"/>')
            out.append(f'<polyline points="{path}" stroke="{line.color}" fill="none" stroke-width="{line_width}"/>')
    colors = {line.legend: line.color for line in lines}
    y = top + plot_h + bottom + 12
    for row in rows:
        x = 4.0
        for entry in row:
            color = colors.get(entry)
            if color:
                out.append(f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="12" height="3" fill="{color}"/>')
            css = "" if color or entry.startswith("+") else ' class="nodata"'
            out.append(f'<text x="{x + 16:.1f}" y="{y:.1f}"{css}>{html.escape(entry)}</text>')
            x += 16 + len(entry) * CHAR_WIDTH + 12
        y += 15
    out.append("</svg>")
    return "\n".join(out)


STYLE = f"""
body {{ margin: 0; background: #111217; color: #ccccdc; font: {FONT_SIZE}px "DejaVu Sans", sans-serif; }}
header {{ height: {HEADER_HEIGHT}px; padding: 0 {PAGE_PADDING + 4}px; display: flex; flex-direction: column;
  justify-content: center; }}
header h1 {{ font-size: 17px; margin: 0 0 4px; font-weight: 500; }}
.board {{ position: relative; margin: 0 {PAGE_PADDING}px; }}
.row {{ position: absolute; font-size: 14px; font-weight: 600; line-height: {CELL_HEIGHT}px; }}
.panel {{ position: absolute; box-sizing: border-box; background: #181b1f; border: 1px solid #2c3235;
  border-radius: 2px; }}
.panel h2 {{ font-size: 12px; font-weight: 500; margin: 0; height: 24px; line-height: 24px; padding: 0 8px;
  white-space: nowrap; overflow: hidden; }}
.panel.broken {{ border-color: #e02f44; }}
svg {{ display: block; margin: 0 4px; }}
svg text {{ fill: #9fa7b3; font-size: {FONT_SIZE}px; font-family: "DejaVu Sans", sans-serif; }}
svg text.nodata {{ fill: #e02f44; }}
svg .grid {{ stroke: #2c3235; stroke-width: 1; shape-rendering: crispEdges; }}
"""


def page_html(board: dict[str, Any], panels: list[PanelData], start: float, end: float, step: float) -> str:
    """The dashboard in its gridPos layout, as one page with nothing to fetch."""
    data_of = {data.panel["id"]: data for data in panels}
    column = (PAGE_WIDTH - 2 * PAGE_PADDING) / GRID_COLUMNS
    bottom = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in board["panels"])
    clock = "%Y-%m-%d %H:%M:%S"
    span = f"{datetime.fromtimestamp(start, UTC).strftime(clock)} to {datetime.fromtimestamp(end, UTC):%H:%M:%S} UTC"
    body = []
    for panel in board["panels"]:
        grid = panel["gridPos"]
        left, top = grid["x"] * column, grid["y"] * (CELL_HEIGHT + CELL_MARGIN)
        width, height = grid["w"] * column - CELL_MARGIN, grid["h"] * (CELL_HEIGHT + CELL_MARGIN) - CELL_MARGIN
        place = f"left:{left:.0f}px;top:{top:.0f}px;width:{width:.0f}px;height:{height:.0f}px"
        title = html.escape(panel["title"])
        data = data_of.get(panel["id"])
        if data is None:
            body.append(f'<div class="row" style="{place}">{title}</div>')
            continue
        broken = " broken" if data.empty_targets else ""
        svg = chart_svg(data, width - 10, height - 30, start, end, step)
        body.append(f'<div class="panel{broken}" style="{place}"><h2>{title}</h2>\n{svg}</div>')
    total = bottom * (CELL_HEIGHT + CELL_MARGIN)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(board['title'])}</title><style>{STYLE}</style></head><body>\n"
        f"<header><h1>{html.escape(board['title'])}</h1><div>{span}, step {step:g} s, region and cluster: All. "
        "Rendered from a real run by tools/render_dashboard.py: RabbitMQ, engines and user_interfaces on loopback, "
        "scraped by Prometheus every second.</div></header>\n"
        f'<div class="board" style="height:{total}px">\n' + "\n".join(body) + "\n</div></body></html>\n"
    )


def screenshot(html_path: Path, png_path: Path) -> None:
    """A full-page PNG of the page, in Debian's Chromium; the page may fetch nothing but itself."""
    from playwright.sync_api import sync_playwright  # the venv's; imported late: only this step needs it

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        try:
            page = browser.new_page(viewport={"width": PAGE_WIDTH, "height": 800}, device_scale_factor=1)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(html_path.resolve().as_uri())
            page.screenshot(path=str(png_path), full_page=True)
        finally:
            browser.close()
    foreign = [url for url in requested if url != html_path.resolve().as_uri()]
    if foreign:
        raise RuntimeError(f"the dashboard page requested other resources: {foreign}")


# --- Entry point -------------------------------------------------------------------------------


EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def raise_exit(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP leave like Ctrl-C does, through every cleanup; a second one must not cut it short."""
    for other in EXIT_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    board = json.loads(args.dashboard.read_text())
    if not chart_panels(board):
        raise ValueError(f"{args.dashboard}: no panel with queries")
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobstack-dashboard-")))
        say(f"work dir: {base}")
        broker, regions, prometheus = start_stack(stack, base, args.regions, say)
        start = time.time() - 2 * SCRAPE_SECONDS
        load = Load(broker, regions, Scenario(args.seconds), say)
        load.run()
        for answer, count in sorted(load.answers.items()):
            say(f"load: {answer}: {count}")
        # Two more scrapes, so that the last events are in the data.
        time.sleep(2 * SCRAPE_SECONDS + 0.5)
        end = time.time()
        # About 50 points a line at most: a chart of a minute reads better in 2 s steps than in 1 s ones.
        step = max(SCRAPE_SECONDS, math.ceil((end - start) / 50))
        panels = evaluate(board, prometheus, start, end, step)
    # Everything is stopped here; what is left is drawing.
    for line in summary(panels):
        say(line)
    facts = report(panels, start, end, step)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(facts, indent=2) + "\n")
    html_path: Path = args.html
    for path in (html_path, args.output):
        path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page_html(board, panels, start, end, step))
    screenshot(html_path, args.output)
    say(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB) and {html_path}")
    if facts["empty"]:
        say("panels without data (a query that matches nothing on real services is broken):")
        for where in facts["empty"]:
            say(f"  {where}")
        return 1
    say(f"every query of {len(panels)} panels returned data")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long the load runs (default 60)")
    parser.add_argument("--regions", type=int, choices=(1, 2), default=2, help="fake regions (default 2)")
    default_html = DEFAULT_OUTPUT.with_suffix(".html")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help=f"default {DASHBOARD.relative_to(ROOT)}")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"PNG, default {DEFAULT_OUTPUT.relative_to(ROOT)}"
    )
    parser.add_argument(
        "--html", type=Path, default=default_html, help=f"the page, default {default_html.relative_to(ROOT)}"
    )
    parser.add_argument("--report", type=Path, help="also write series and points per query as JSON")
    args = parser.parse_args(argv)
    if args.seconds < 8:
        parser.error(f"--seconds {args.seconds:g}: at least 8, so that every phase of the load fits")
    for signum in EXIT_SIGNALS:
        signal.signal(signum, raise_exit)
    try:
        return run(args)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"render_dashboard: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
