"""plugins/filter/jobstack.py: Kubernetes quantities."""

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


def test_complete_resources_name_each_missing_amount():
    errors = jobstack.k8s_resources_errors({"requests": {"cpu": "1"}}, "engine_resources", complete=True)
    assert errors == [
        "engine_resources.requests.memory is missing (set requests and limits of cpu and memory)",
        "engine_resources.limits.cpu is missing (set requests and limits of cpu and memory)",
        "engine_resources.limits.memory is missing (set requests and limits of cpu and memory)",
    ]
    complete = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert jobstack.k8s_resources_errors(complete, "engine_resources", complete=True) == []
