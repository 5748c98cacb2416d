"""Invalid inventory values stop site.yml in preflight: one message naming the variable, no file written."""

from __future__ import annotations

import json
import re

import pytest

CASES = [
    pytest.param(
        "dev",
        {"jobstack_environment": "qa"},
        "jobstack_environment is 'qa' but must be one of",
        id="unknown-environment",
    ),
    pytest.param(
        "dev",
        {"engine_replicas": 0},
        "engine_replicas is '0' but must be a whole number of at least 1",
        id="engine-replicas-below-1",
    ),
    pytest.param(
        "production",
        {"rabbitmq_cluster_replicas": 1},
        "rabbitmq_cluster_replicas is 1 but must be at least 3 in production",
        id="production-rabbitmq-replicas",
    ),
    pytest.param(
        "staging", {"images_tag": "latest"}, "images_tag must not be 'latest' in staging", id="latest-tag-outside-dev"
    ),
    pytest.param(
        "production",
        {"images_registry": ""},
        "images_registry must be set for production",
        id="no-registry-in-production",
    ),
    pytest.param(
        "staging", {"images_registry": ""}, "images_registry must be set for staging", id="no-registry-in-staging"
    ),
    pytest.param(
        "dev",
        {"engine_resources": {"requests": {"cpu": "lots", "memory": "64Mi"}}},
        "engine_resources.requests.cpu = 'lots' is not a valid Kubernetes cpu quantity",
        id="malformed-cpu",
    ),
    pytest.param(
        "staging",
        {"user_interface_resources": {"limits": {"memory": "1 GB"}}},
        "user_interface_resources.limits.memory = '1 GB' is not a valid Kubernetes memory quantity",
        id="malformed-memory",
    ),
    pytest.param(
        "production",
        {"rabbitmq_cluster_resources": {"limits": {"cpu": "2", "memory": "2GiB"}}},
        "rabbitmq_cluster_resources.limits.memory = '2GiB' is not a valid Kubernetes memory quantity",
        id="malformed-broker-memory",
    ),
]


@pytest.mark.parametrize(("inventory", "extra", "message"), CASES)
def test_invalid_value_stops_before_any_change(run_playbook, tmp_path, inventory, extra, message):
    run = run_playbook("site.yml", inventory, "-e", json.dumps(extra), render_root=tmp_path)
    assert run.returncode != 0
    failures = [line for line in run.output.splitlines() if line.startswith("fatal:")]
    assert failures, run.output[-3000:]
    assert message in run.output, run.output[-3000:]
    # One message: the failing assert's text is a single line naming the variable.
    msg_lines = [line for line in run.output.splitlines() if message in line]
    assert len(msg_lines) >= 1 and re.search(r"\b" + re.escape(next(iter(extra))) + r"\b", msg_lines[0])
    assert "PLAY [Images" not in run.output and "PLAY [Rollout" not in run.output
    assert not any(tmp_path.rglob("*")), "preflight failed but files were rendered"
