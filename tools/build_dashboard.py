"""Build the Grafana dashboard of the job pipeline: python tools/build_dashboard.py [--check] [--output PATH]

The dashboard is code so that a review sees queries, not a thousand lines of JSON. Its output,
roles/monitoring/files/jobstack-dashboard.json, is committed because the monitoring role ships that
file as it is; tests/monitoring asserts that the committed file is exactly this script's output.
Run the script after any change here and commit both. `--check` exits 1 when the file is stale.

Only core Grafana panels (row, timeseries) and the Prometheus data source are used, so the JSON
imports into any Grafana 10 or later without plugins. The data source is the `datasource` variable,
and every query is filtered by the `region` and `cluster` variables and broken down `by (region)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[1] / "roles" / "monitoring" / "files" / "jobstack-dashboard.json"

# Queue names as the services declare them (jobs_queue, dead_letter_queue in docs/services.md).
JOBS_QUEUE = "jobstack.jobs"
DEAD_LETTER_QUEUE = "jobstack.jobs.dead"

ON_JOBS_QUEUE = f'queue="{JOBS_QUEUE}"'
ON_DEAD_LETTER_QUEUE = f'queue="{DEAD_LETTER_QUEUE}"'

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
# Probes and scrapes are not API traffic (the alert rules leave them out the same way).
API_ROUTES = 'route!~"/healthz|/readyz|/metrics"'
RATE = "[$__rate_interval]"


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: list[Query]
    unit: str
    width: int = 8
    height: int = 8


@dataclasses.dataclass(frozen=True)
class Row:
    title: str
    panels: list[Panel]


def where(*matchers: str) -> str:
    """A label selector: the dashboard's region and cluster variables plus the given matchers."""
    return "{" + ", ".join(['region=~"$region"', 'cluster=~"$cluster"', *matchers]) + "}"


def percentiles(metric: str, by: str = "region") -> list[Query]:
    """p50, p95 and p99 of a histogram, one line per value of `by`."""
    legend = "{{" + "}} {{".join(part.strip() for part in by.split(",")) + "}}"
    return [
        Query(
            f"histogram_quantile({quantile}, sum by ({by}, le) (rate({metric}_bucket{where()}{RATE})))",
            f"{legend} p{round(quantile * 100)}",
        )
        for quantile in (0.5, 0.95, 0.99)
    ]


ROWS = [
    Row(
        "Jobs",
        [
            Panel(
                "Jobs submitted",
                "Jobs accepted by the user_interface (202 answered, confirmed by the broker), per second.",
                [Query(f"sum by (region) (rate(jobstack_ui_jobs_submitted_total{where()}{RATE}))", "{{region}}")],
                "ops",
            ),
            Panel(
                "Jobs finished by outcome",
                "Jobs acked by the engines: succeeded, failed (the job raised) and rejected (invalid).",
                [
                    Query(
                        f"sum by (region, status) (rate(jobstack_engine_jobs_total{where()}{RATE}))",
                        "{{region}} {{status}}",
                    )
                ],
                "ops",
            ),
            Panel(
                "Jobs dead-lettered by reason",
                f"Jobs the engines sent to {DEAD_LETTER_QUEUE}: invalid, delivery-limit (crashed engines "
                "repeatedly) or unroutable (a result nobody receives).",
                [
                    Query(
                        f"sum by (region, reason) (rate(jobstack_engine_dead_lettered_total{where()}{RATE}))",
                        "{{region}} {{reason}}",
                    )
                ],
                "ops",
            ),
        ],
    ),
    Row(
        "Latency",
        [
            Panel(
                "Result latency",
                "Time from submission to the result reaching the user_interface.",
                percentiles("jobstack_ui_result_latency_seconds"),
                "s",
            ),
            Panel(
                "Job duration in the engine",
                "Time from delivery to acknowledgement, succeeded and failed jobs.",
                percentiles("jobstack_engine_job_duration_seconds"),
                "s",
            ),
            Panel(
                "API request duration",
                "Time the user_interface takes to answer an HTTP request, by route.",
                [
                    Query(
                        "histogram_quantile(0.99, sum by (region, route, le) "
                        f"(rate(jobstack_ui_http_request_duration_seconds_bucket{where(API_ROUTES)}{RATE})))",
                        "{{region}} {{route}} p99",
                    )
                ],
                "s",
            ),
        ],
    ),
    Row(
        "Backlog",
        [
            Panel(
                f"Jobs in {JOBS_QUEUE}",
                "Ready: waiting for an engine. Unacked: delivered to an engine and not finished yet. A quorum "
                "queue may be reported by several nodes, hence max.",
                [
                    Query(
                        f"max by (region) (rabbitmq_detailed_queue_messages_ready{where(ON_JOBS_QUEUE)})",
                        "{{region}} ready",
                    ),
                    Query(
                        f"max by (region) (rabbitmq_detailed_queue_messages_unacked{where(ON_JOBS_QUEUE)})",
                        "{{region}} unacked",
                    ),
                ],
                "short",
            ),
            Panel(
                "Estimated wait of a new job",
                "Jobs ready divided by the rate at which engines finish jobs (the JobstackJobsWaitingTooLong "
                "alert fires above 5 minutes).",
                [
                    Query(
                        f"max by (region) (rabbitmq_detailed_queue_messages_ready{where(ON_JOBS_QUEUE)})"
                        f" / sum by (region) (rate(jobstack_engine_jobs_total{where()}[5m]))",
                        "{{region}}",
                    )
                ],
                "s",
            ),
            Panel(
                "Pending results and dead letters",
                "Submitted jobs whose result has not arrived yet (every UI replica sees every job of its "
                f"region, hence max), and dead letters waiting in {DEAD_LETTER_QUEUE} for an operator.",
                [
                    Query(f"max by (region) (jobstack_ui_jobs_pending{where()})", "{{region}} pending"),
                    Query(
                        f"max by (region) (rabbitmq_detailed_queue_messages{where(ON_DEAD_LETTER_QUEUE)})",
                        "{{region}} dead letters",
                    ),
                ],
                "short",
            ),
        ],
    ),
    Row(
        "Engines",
        [
            Panel(
                "Engines",
                f"Engines connected to the broker and consumers on {JOBS_QUEUE}; the two should agree.",
                [
                    Query(f"sum by (region) (jobstack_engine_broker_connected{where()})", "{{region}} connected"),
                    Query(
                        f"max by (region) (rabbitmq_detailed_queue_consumers{where(ON_JOBS_QUEUE)})",
                        "{{region}} consumers",
                    ),
                ],
                "short",
            ),
            Panel(
                "Deliveries in hand",
                "Jobs the engines hold (running or waiting to be acked), and redeliveries per second "
                "(an engine died or lost its connection holding them).",
                [
                    Query(f"sum by (region) (jobstack_engine_deliveries_in_hand{where()})", "{{region}} in hand"),
                    Query(
                        f"sum by (region) (rate(jobstack_engine_redeliveries_total{where()}{RATE}))",
                        "{{region}} redelivered/s",
                    ),
                ],
                "short",
            ),
            Panel(
                "Oldest delivery held",
                "Age of the oldest unacked delivery of the worst engine (JobstackEngineStalled fires above 2 minutes).",
                [Query(f"max by (region) (jobstack_engine_oldest_delivery_seconds{where()})", "{{region}}")],
                "s",
            ),
        ],
    ),
    Row(
        "API and broker",
        [
            Panel(
                "API answers by status",
                "HTTP answers of the user_interface per second, probes and scrapes left out: 429 is backpressure "
                "(queue full), 503 a broker problem.",
                [
                    Query(
                        f"sum by (region, status) (rate(jobstack_ui_http_requests_total{where(API_ROUTES)}{RATE}))",
                        "{{region}} {{status}}",
                    )
                ],
                "reqps",
                width=6,
            ),
            Panel(
                "Publish failures by reason",
                "Publishes the broker did not confirm: nacked, unroutable, connection-lost or timeout.",
                [
                    Query(
                        f"sum by (region, reason) (rate(jobstack_engine_publish_failures_total{where()}{RATE}))",
                        "{{region}} engine {{reason}}",
                    ),
                    Query(
                        f"sum by (region, reason) (rate(jobstack_ui_publish_failures_total{where()}{RATE}))",
                        "{{region}} user_interface {{reason}}",
                    ),
                ],
                "ops",
                width=6,
            ),
            Panel(
                "Broker connections",
                "Services not connected to RabbitMQ (should be 0) and reconnects within the interval.",
                [
                    Query(
                        f"sum by (region) (1 - jobstack_engine_broker_connected{where()})",
                        "{{region}} engines disconnected",
                    ),
                    Query(
                        f"sum by (region) (1 - jobstack_ui_broker_connected{where()})", "{{region}} UIs disconnected"
                    ),
                    Query(
                        f"sum by (region) (increase(jobstack_engine_broker_reconnects_total{where()}{RATE}))",
                        "{{region}} engine reconnects",
                    ),
                    Query(
                        f"sum by (region) (increase(jobstack_ui_broker_reconnects_total{where()}{RATE}))",
                        "{{region}} UI reconnects",
                    ),
                ],
                "short",
                width=6,
            ),
            Panel(
                "Broker alarms",
                "RabbitMQ memory and disk alarms; while one is 1, the broker blocks every publisher.",
                [
                    Query(f"max by (region) (rabbitmq_alarms_memory_used_watermark{where()})", "{{region}} memory"),
                    Query(f"max by (region) (rabbitmq_alarms_free_disk_space_watermark{where()})", "{{region}} disk"),
                ],
                "short",
                width=6,
            ),
        ],
    ),
]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-value query variable over a label; "All" matches series without the label too."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def timeseries(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "min": 0,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"datasource": DATASOURCE, "expr": query.expr, "legendFormat": query.legend, "refId": chr(ord("A") + i)}
            for i, query in enumerate(panel.queries)
        ],
    }


def layout(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows one under the other, each row's panels left to right, wrapping at the grid width."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y, x, line_height = y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                y, x, line_height = y + line_height, 0, 0
            panels.append(timeseries(panel, len(panels) + 1, x, y))
            x, line_height = x + panel.width, max(line_height, panel.height)
        y += line_height
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "uid": "jobstack-pipeline",
        "title": "jobstack: job pipeline",
        "description": "Jobs submitted, finished, dead-lettered; latency; backlog; engines; per region.",
        "tags": ["jobstack"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "links": [],
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "options": [],
                    "regex": "",
                    "refresh": 1,
                    "hide": 0,
                },
                variable("region", "Region", "label_values(jobstack_ui_jobs_submitted_total, region)"),
                variable(
                    "cluster", "Cluster", 'label_values(jobstack_ui_jobs_submitted_total{region=~"$region"}, cluster)'
                ),
            ]
        },
        "panels": layout(ROWS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT.name})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is not the output of {Path(__file__).name}: run it and commit the result")
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
