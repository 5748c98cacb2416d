"""The committed dashboard is the generator's output, valid Grafana JSON, and valid PromQL per region."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tools import build_dashboard

from .queries import DASHBOARD, ROOT, dashboard, dashboard_queries, metric_names, promtool

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
CORE_PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap"}
# Grafana's own variables, replaced by a value PromQL accepts before promtool reads a query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$region": ".*", "$cluster": ".*"}


def test_the_committed_dashboard_is_exactly_the_generator_output() -> None:
    assert DASHBOARD.read_text() == build_dashboard.render(), (
        f"run `python tools/build_dashboard.py` and commit {DASHBOARD.relative_to(ROOT)}"
    )


def test_the_generator_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    script = ROOT / "tools" / "build_dashboard.py"
    fresh = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    stale = tmp_path / "dashboard.json"
    stale.write_text(build_dashboard.render().replace("Jobs submitted", "Jobs sent"))
    result = subprocess.run(
        [sys.executable, str(script), "--check", "--output", str(stale)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "is not the output of build_dashboard.py" in result.stdout


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = dashboard()["panels"]
    return found


def test_the_dashboard_is_grafana_json_with_unique_ids_and_a_grid_without_overlaps() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] == "jobstack-pipeline" and board["title"]
    assert "__inputs" not in board and "__requires" not in board, "an export for import, not for provisioning"
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and all(isinstance(value, int) for value in grid.values()), panel
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = set(itertools.product(range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])))
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_panel_is_a_core_panel_reading_the_datasource_variable() -> None:
    for panel in panels():
        assert panel["type"] in CORE_PANEL_TYPES, f"{panel['title']}: {panel['type']} needs a plugin"
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("region", "cluster"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_query_is_filtered_by_region_and_cluster_and_broken_down_by_region() -> None:
    for where, expr in dashboard_queries():
        if where.startswith("variable"):
            continue
        selectors = expr.count("{")
        assert expr.count('region=~"$region"') == selectors, f"{where}: a selector without the region filter"
        assert expr.count('cluster=~"$cluster"') == selectors, f"{where}: a selector without the cluster filter"
        assert "by (region" in expr, f"{where}: not broken down by region"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, (where, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable promtool cannot read: {expr}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_shows_every_stage_of_the_pipeline() -> None:
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    stages = {
        "submitted": "jobstack_ui_jobs_submitted_total",
        "succeeded, failed, rejected": "jobstack_engine_jobs_total",
        "dead-lettered": "jobstack_engine_dead_lettered_total",
        "result latency percentiles": "jobstack_ui_result_latency_seconds_bucket",
        "job duration percentiles": "jobstack_engine_job_duration_seconds_bucket",
        "backlog": "rabbitmq_detailed_queue_messages_ready",
        "dead-letter queue": "rabbitmq_detailed_queue_messages",
        "engines": "jobstack_engine_broker_connected",
        "consumers": "rabbitmq_detailed_queue_consumers",
    }
    assert {stage: name for stage, name in stages.items() if name not in used} == {}
    outcomes = json.dumps([panel for panel in panels() if panel["title"] == "Jobs finished by outcome"])
    assert "by (region, status)" in outcomes
