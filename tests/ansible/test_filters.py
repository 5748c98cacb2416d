"""plugins/filter/jobstack.py: Kubernetes quantities and Secret redaction."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import jobstack


@pytest.mark.parametrize("value", ["1", "0.5", "250m", 2, "1.25"])
def test_valid_cpu_quantities(value):
    assert jobstack.k8s_cpu_ok(value)


@pytest.mark.parametrize("value", ["", "lots", "1 core", "250M", "-1", "1.2345", True, None, "1Gi"])
def test_invalid_cpu_quantities(value):
    assert not jobstack.k8s_cpu_ok(value)


@pytest.mark.parametrize("value", ["512Mi", "1Gi", "1G", "134217728", "64Ki"])
def test_valid_memory_quantities(value):
    assert jobstack.k8s_memory_ok(value)


@pytest.mark.parametrize("value", ["1 GB", "2GiB", "1.5Gi", "lots", "", "-1Gi", None])
def test_invalid_memory_quantities(value):
    assert not jobstack.k8s_memory_ok(value)


def test_resource_errors_name_the_variable_and_field():
    errors = jobstack.k8s_resources_errors({"requests": {"cpu": "x", "memory": "1Gi"}, "limit": {}}, "engine_resources")
    assert errors == [
        "engine_resources.requests.cpu = 'x' is not a valid Kubernetes cpu quantity (e.g. '250m' or '1')",
        "engine_resources.limit is not a resources section (use requests or limits)",
    ]


def test_secret_values_are_redacted_and_keys_kept():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"password": "aHVudGVyMg=="},
        "stringData": {"token": "hunter2"},
    }
    redacted = jobstack.redact_secret(secret)
    assert redacted["data"] == {"password": "REDACTED"}
    assert redacted["stringData"] == {"token": "REDACTED"}
    assert secret["stringData"]["token"] == "hunter2", "the input is not modified"  # noqa: S105 - test data


def test_other_kinds_are_not_redacted():
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    assert jobstack.redact_secret(config) is config


def test_rendered_file_names_follow_apply_order():
    objects = [
        {"kind": "Namespace", "metadata": {"name": "jobstack"}},
        {"kind": "RabbitmqCluster", "metadata": {"name": "jobstack"}},
    ]
    assert jobstack.render_file_names(objects, "30-rabbitmq_cluster") == [
        "30-rabbitmq_cluster-01-namespace-jobstack.yaml",
        "30-rabbitmq_cluster-02-rabbitmqcluster-jobstack.yaml",
    ]
