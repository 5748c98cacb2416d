"""Invalid inventory values stop site.yml in preflight: one failure whose message names the variable, no file."""

from __future__ import annotations

import json

import pytest
from conftest import json_results

CASES = [
    pytest.param(
        "dev",
        {"jobstack_environment": "Dev Env"},
        "jobstack_environment is 'Dev Env' but must be a lower-case DNS label",
        id="environment-name-not-a-dns-label",
    ),
    pytest.param("dev", {"jobstack_target": "vm"}, "jobstack_target", id="unknown-target"),
    pytest.param(
        "dev", {"engine_replicas": 0}, "engine_replicas must be at least 1, got 0", id="engine-replicas-below-1"
    ),
    pytest.param(
        "production",
        {"rabbitmq_cluster_replicas": 1},
        "rabbitmq_cluster_replicas is 1 but must be at least 3 in production",
        id="production-rabbitmq-replicas",
    ),
    pytest.param(
        "staging",
        {"images_tag": "latest"},
        "images_tag must not be 'latest' in staging",
        id="latest-tag-for-a-registry",
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
        {"engine_resources": {"requests": {"cpu": "lots"}}},
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
    pytest.param(
        "dev",
        {"engine_config": {"jobs_queue": "other"}},
        "engine_config must not set jobs_queue",
        id="topology-key-in-config",
    ),
    pytest.param(
        "staging",
        {"engine_autoscaling_min_replicas": 7},
        "engine_autoscaling_max_replicas must be at least 1 and at least engine_autoscaling_min_replicas (7)",
        id="autoscaler-bounds",
    ),
    pytest.param(
        "dev",
        {"user_interface_config": {"shutdown_grace_seconds": 60}},
        "user_interface_termination_grace_seconds must be >= user_interface_config.shutdown_grace_seconds (60) plus 10",
        id="ui-grace-too-short",
    ),
]


@pytest.mark.parametrize(("inventory", "extra", "message"), CASES)
def test_invalid_value_stops_the_run_in_preflight_with_one_message(run_playbook, tmp_path, inventory, extra, message):
    run = run_playbook(
        "site.yml",
        inventory,
        "-e",
        json.dumps(extra),
        render_root=tmp_path,
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert run.returncode != 0
    results = json_results(run.output)
    failures = [item for item in results if item["result"].get("failed")]
    # Production has two clusters: the same check fails on each, with the same message.
    assert {item["task"] for item in failures} and len({item["result"]["msg"] for item in failures}) == 1, failures
    msg = failures[0]["result"]["msg"]
    assert message in msg, msg
    # The failing check is in the preflight play: no role's main entry point ran, nothing was rendered.
    assert not any("arg spec 'main'" in item["task"] for item in results)
    assert not any(tmp_path.rglob("*"))
