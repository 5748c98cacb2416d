"""Topology as code: every exchange, queue, binding and policy the services rely on is a Topology Operator
resource with the services' own arguments (so the two never conflict), in the dedicated vhost; the resources
are applied in an order where each finds what it needs, and every stage waits for what it applied, at its
current generation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, CLUSTERS, KUBERNETES_INVENTORIES, REPO_ROOT, ansible_playbook, json_results


def service_topology() -> dict[str, Any]:
    """The names the services declare (their defaults), read from the services' own package in a process of its
    own: plugins/filter/jobstack.py, which other tests import, would shadow the package's name here."""
    code = (
        "import dataclasses, json; from jobstack.config import ServiceSettings; from jobstack import protocol; "
        "print(json.dumps({**dataclasses.asdict(ServiceSettings()), 'exchange': protocol.EXCHANGE, "
        "'job_key': protocol.JOB_KEY, 'result_key': protocol.RESULT_KEY}))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT / "services")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)


SERVICES = service_topology()
EXCHANGE, JOB_KEY, RESULT_KEY = SERVICES["exchange"], SERVICES["job_key"], SERVICES["result_key"]


def specs(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc["kind"] == kind:
            found[doc["spec"].get("name", doc["metadata"]["name"])] = doc["spec"]
    return found


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_every_exchange_and_queue_the_services_declare_is_a_resource_with_their_arguments(renders, inventory):
    root, run = renders[inventory]
    assert run.returncode == 0, run.output[-3000:]
    directory = root / inventory / CLUSTERS[inventory][0]
    exchanges = specs(directory, "Exchange")
    # services/jobstack/topology.py: declare_jobs (job-exchange direct, non-durable, as the original
    # clients declare it) and declare_dead_letters (the DLX, fanout, durable).
    assert {name: (spec["type"], spec["durable"], spec["autoDelete"]) for name, spec in exchanges.items()} == {
        EXCHANGE: ("direct", False, False),
        SERVICES["dead_letter_exchange"]: ("fanout", True, False),
    }
    queues = specs(directory, "Queue")
    # Durable, not auto-deleted, and no argument but the type (x-queue-type), like the declarations.
    assert {name: spec["type"] for name, spec in queues.items()} == {
        SERVICES["jobs_queue"]: SERVICES["jobs_queue_type"],
        SERVICES["dead_letter_queue"]: SERVICES["jobs_queue_type"],
        SERVICES["results_stream"]: "stream",
    }
    for spec in queues.values():
        assert (spec["durable"], spec["autoDelete"], spec["deletionPolicy"]) == (True, False, "retain")
        assert "arguments" not in spec
    bindings = {
        (spec["source"], spec["destination"], spec["routingKey"]) for spec in specs(directory, "Binding").values()
    }
    assert bindings == {
        (EXCHANGE, SERVICES["jobs_queue"], JOB_KEY),
        (EXCHANGE, SERVICES["results_stream"], RESULT_KEY),
        (SERVICES["dead_letter_exchange"], SERVICES["dead_letter_queue"], ""),
    }
    every = [*exchanges.values(), *queues.values(), *specs(directory, "Binding").values()]
    every += [*specs(directory, "Policy").values(), *specs(directory, "Permission").values()]
    assert {spec["vhost"] for spec in every} == {"jobstack"}
    assert specs(directory, "Vhost")["jobstack"]["deletionPolicy"] == "retain"


def test_the_policies_make_dead_lettering_at_least_once_and_bound_every_queue(renders):
    root, _ = renders["production"]
    policies = specs(root / "production" / "prod-us-east-1", "Policy")
    assert {name: spec["pattern"] for name, spec in policies.items()} == {
        "jobstack-jobs": r"^jobstack\.jobs$",
        "jobstack-dead-letters": r"^jobstack\.jobs\.dead$",
        "jobstack-results": r"^jobstack\.results$",
    }
    jobs = policies["jobstack-jobs"]["definition"]
    # at-least-once dead-lettering needs overflow reject-publish (with drop-head it is at most once).
    assert jobs["dead-letter-strategy"] == "at-least-once" and jobs["overflow"] == "reject-publish"
    assert jobs["delivery-limit"] == 5 and jobs["max-length"] == 100000
    assert policies["jobstack-dead-letters"]["definition"] == {"overflow": "reject-publish", "max-length": 100000}
    assert policies["jobstack-results"]["definition"] == {"max-age": "7D", "max-length-bytes": 5000000000}


def test_the_queue_bounds_are_settable(run_playbook, tmp_path):
    settings = {
        "rabbitmq_cluster_jobs_max_length": 500,
        "rabbitmq_cluster_dead_letter_max_length": 50,
        "rabbitmq_cluster_results_max_age": "12h",
        "rabbitmq_cluster_results_max_length_bytes": 1000000,
    }
    run = run_playbook("site.yml", "dev", "-e", json.dumps(settings), render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    policies = specs(tmp_path / "dev" / "minikube-jobstack", "Policy")
    assert policies["jobstack-jobs"]["definition"]["max-length"] == 500
    assert policies["jobstack-dead-letters"]["definition"]["max-length"] == 50
    assert policies["jobstack-results"]["definition"] == {"max-age": "12h", "max-length-bytes": 1000000}


def test_no_rabbitmqctl_path_remains():
    assert not (REPO_ROOT / "roles" / "rabbitmq_cluster" / "tasks" / "policy_rabbitmqctl.yml").exists()
    # The Docker broker has no operator: its policies are set with rabbitmqctl, and only there.
    docker_broker = REPO_ROOT / "roles" / "docker_broker"
    for path in (REPO_ROOT / "roles").rglob("*.yml"):
        if not path.is_relative_to(docker_broker):
            assert "rabbitmqctl set_policy" not in path.read_text(), path


def broker_stages(tmp_path: Path, ansible_env: dict[str, str], **overrides: Any) -> list[dict[str, Any]]:
    """The broker role's stages as its apply step receives them (what is applied and what is waited for)."""
    playbook = tmp_path / "stages.yml"
    play = {
        "name": "The stages of the broker role",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "jobstack_environment": "test",
            "jobstack_kube_context": "test",
            "jobstack_region": "test-1",
            "jobstack_render_root": str(tmp_path / "rendered"),
            "render_only": True,
            "ansible_python_interpreter": str(BIN / "python"),
            **overrides,
        },
        "tasks": [
            {
                "name": "Publish the project-wide settings.",
                "ansible.builtin.import_role": {"name": "jobstack.deploy._common", "tasks_from": "preflight"},
            },
            # The role keeps its stages as a fact before it hands them to roles/_common (entry point apply).
            {"name": "Render the broker.", "ansible.builtin.import_role": {"name": "jobstack.deploy.rabbitmq_cluster"}},
            {"name": "Show the stages.", "ansible.builtin.debug": {"msg": "{{ __rabbitmq_cluster_stages }}"}},
        ],
    }
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    result = ansible_playbook(
        {**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}, str(playbook), "-c", "local"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    shown = [item for item in json_results(result.stdout) if item["task"] == "Show the stages."]
    return shown[0]["result"]["msg"]


def test_every_stage_waits_for_what_it_applied_at_its_current_generation(tmp_path, ansible_env):
    stages = broker_stages(tmp_path, ansible_env, rabbitmq_cluster_replicas=3)
    summary = [(stage["stage"], [obj["kind"] for obj in stage["objects"]], stage.get("ready")) for stage in stages]
    assert summary == [
        ("29-rabbitmq_cluster", ["Namespace"], None),
        ("30-rabbitmq_tls", ["Issuer", "Certificate"], ["Ready"]),
        ("31-rabbitmq_tls", ["Issuer"], ["Ready"]),
        ("32-rabbitmq_tls", ["Certificate"], ["Ready"]),
        ("33-rabbitmq_cluster", ["NetworkPolicy"], None),
        # Not ClusterAvailable (true with one endpoint): every replica ready, for the generation applied.
        ("34-rabbitmq_cluster", ["RabbitmqCluster"], ["AllReplicasReady", "ReconcileSuccess"]),
        ("35-rabbitmq_cluster", ["PodDisruptionBudget"], None),
        ("36-rabbitmq_topology", ["Vhost"], ["Ready"]),
        ("37-rabbitmq_topology", ["User", "User", "Policy", "Policy", "Policy", "Exchange", "Exchange"], ["Ready"]),
        ("38-rabbitmq_topology", ["Queue", "Queue", "Queue"], ["Ready"]),
        ("39-rabbitmq_topology", ["Binding", "Binding", "Binding", "Permission", "Permission"], ["Ready"]),
    ]


def test_the_apply_step_retries_only_while_a_webhook_does_not_serve_and_waits_at_the_generation():
    tasks = yaml.safe_load((REPO_ROOT / "roles" / "_common" / "tasks" / "apply.yml").read_text())
    apply = next(task for task in tasks if "kubernetes.core.k8s" in task)
    assert apply["until"].endswith("| jobstack.deploy.webhook_not_serving)")
    assert apply["retries"] == "{{ _common_webhook_retries }}"
    variables = yaml.safe_load((REPO_ROOT / "roles" / "_common" / "vars" / "main.yml").read_text())
    # Bounded: about two minutes.
    assert variables["_common_webhook_retries"] * variables["_common_webhook_delay"] <= 180
    wait = next(task for task in tasks if "kubernetes.core.k8s_info" in task)
    assert "jobstack.deploy.not_ready_reason(item.0.ready)" in wait["until"]
