"""Monitoring as code, as rendered: ServiceMonitors for both services and RabbitMQ with region and cluster on
every series, the alert rules file as the PrometheusRule's spec (loaded as data: its annotations keep
Prometheus' own templates), the dashboard in a ConfigMap for Grafana's sidecar, all behind one switch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLUSTERS, REPO_ROOT, validate

ALERTS = REPO_ROOT / "roles" / "monitoring" / "files" / "jobstack-alerts.yml"
DASHBOARD = REPO_ROOT / "roles" / "monitoring" / "files" / "jobstack-dashboard.json"


def monitoring(directory: Path) -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(directory.glob("60-monitoring-*.yaml"))}


def relabelled(endpoint: dict[str, Any], region: str, cluster: str) -> bool:
    return endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "region", "replacement": region},
        {"action": "replace", "targetLabel": "cluster", "replacement": cluster},
    ]


@pytest.mark.parametrize("cluster", CLUSTERS["production"])
def test_both_services_and_rabbitmq_are_scraped_with_region_and_cluster_on_every_series(renders, cluster):
    root, _ = renders["production"]
    directory = root / "production" / cluster
    region = json.loads((directory / "render-info.json").read_text())["region"]
    docs = monitoring(directory)
    monitors = {doc["metadata"]["name"]: doc["spec"] for doc in docs.values() if doc["kind"] == "ServiceMonitor"}
    assert set(monitors) == {"engine", "user-interface", "jobstack-rabbitmq"}
    services = [yaml.safe_load(path.read_text()) for path in directory.glob("*-service-*.yaml")]
    for app in ("engine", "user-interface"):
        spec = monitors[app]
        # The selector picks exactly the service's own Service, whose port it names.
        selected = [s for s in services if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1 and selected[0]["spec"]["ports"][0]["name"] == "http"
        assert [(e["port"], e["path"]) for e in spec["endpoints"]] == [("http", "/metrics")]
        assert relabelled(spec["endpoints"][0], region, cluster)
    broker = monitors["jobstack-rabbitmq"]
    # The labels the Cluster Operator gives the broker's Services (internal/metadata/label.go, v2.22.3).
    assert broker["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "jobstack",
        "app.kubernetes.io/component": "rabbitmq",
    }
    endpoints = broker["endpoints"]
    assert [(e["port"], e["path"], e.get("params")) for e in endpoints] == [
        ("prometheus", "/metrics", None),
        (
            "prometheus",
            "/metrics/detailed",
            {"family": ["queue_coarse_metrics", "queue_metrics", "ra_metrics"]},
        ),
    ]
    assert all(relabelled(endpoint, region, cluster) for endpoint in endpoints)
    assert "per-object" not in json.dumps(docs)


def test_the_rule_is_the_alerts_file_untouched_and_promtool_accepts_it(renders, tmp_path):
    root, _ = renders["staging"]
    docs = monitoring(root / "staging" / "staging-eu-west-1")
    rule = next(doc for doc in docs.values() if doc["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    # Prometheus' own templates survive: they were never run through Jinja.
    assert "{{ $labels.region }}" in json.dumps(rule["spec"])
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is required"
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_the_json_file_in_a_configmap_for_grafanas_sidecar(renders):
    root, _ = renders["production"]
    docs = monitoring(root / "production" / "prod-eu-west-1")
    dashboard = next(doc for doc in docs.values() if doc["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"] == {"jobstack-dashboard.json": DASHBOARD.read_text()}
    assert json.loads(dashboard["data"]["jobstack-dashboard.json"])["uid"] == "jobstack-pipeline"


def test_one_switch_turns_monitoring_on_for_a_cluster_with_the_prometheus_operator(run_playbook, tmp_path):
    # dev's minikube has no Prometheus Operator (jobstack_prometheus_operator: false): the same inventory
    # with the switch on renders the monitors, drops the pods' annotations, and still validates.
    run = run_playbook("site.yml", "dev", "-e", "jobstack_prometheus_operator=true", render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    directory = tmp_path / "dev" / "minikube-jobstack"
    kinds = sorted(doc["kind"] for doc in monitoring(directory).values())
    assert kinds == ["ConfigMap", "PrometheusRule", "ServiceMonitor", "ServiceMonitor", "ServiceMonitor"]
    deployment = yaml.safe_load((directory / "40-engine-05-deployment-engine.yaml").read_text())
    assert not [key for key in deployment["spec"]["template"]["metadata"]["annotations"] if "prometheus.io" in key]
    checked = validate(tmp_path / "dev")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_monitoring_labels_let_prometheus_select_the_monitors_and_rules(run_playbook, tmp_path):
    settings = {"monitoring_labels": {"release": "kube-prometheus-stack"}, "monitoring_scrape_interval": "15s"}
    run = run_playbook("site.yml", "staging", "--tags", "monitoring", "-e", json.dumps(settings), render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    docs = monitoring(tmp_path / "staging" / "staging-eu-west-1")
    assert len(docs) == 5
    for doc in docs.values():
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        for endpoint in doc.get("spec", {}).get("endpoints", []):
            assert endpoint["interval"] == "15s"
