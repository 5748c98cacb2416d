"""Render mode: every inventory renders every cluster, validates strictly and renders again without change."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, CLUSTERS, KUBERNETES_INVENTORIES, REPO_ROOT, validate


def manifests(directory: Path) -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))}


def by_kind(directory: Path, kind: str) -> list[dict]:
    return [doc for doc in manifests(directory).values() if doc["kind"] == kind]


def engine_config(directory: Path) -> str:
    return next(doc for doc in by_kind(directory, "ConfigMap") if doc["metadata"]["name"] == "engine-config")["data"][
        "config.ini"
    ]


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_render_writes_every_cluster_of_a_kubernetes_inventory(renders, inventory):
    root, run = renders[inventory]
    assert run.returncode == 0, run.output[-3000:]
    for cluster in CLUSTERS[inventory]:
        directory = root / inventory / cluster
        info = json.loads((directory / "render-info.json").read_text())
        assert info["environment"] == inventory and info["cluster"] == cluster
        kinds = [doc["kind"] for doc in manifests(directory).values()]
        for kind in ("Namespace", "RabbitmqCluster", "Deployment", "Service", "NetworkPolicy", "ConfigMap"):
            assert kind in kinds, f"{cluster}: no {kind} rendered"
        assert any(path.suffix == ".url" for path in directory.iterdir()), "release manifests are pointers"
    assert (
        f"Render mode wrote {len(list((root / inventory / CLUSTERS[inventory][0]).glob('*.yaml')))} manifests"
        in run.output
    )


def test_render_of_the_docker_target_says_what_it_would_run_and_writes_only_its_render_info(renders):
    root, run = renders["local"]
    assert run.returncode == 0, run.output[-3000:]
    directory = root / "local" / "docker-local"
    assert sorted(path.name for path in directory.iterdir()) == ["render-info.json"]
    assert json.loads((directory / "render-info.json").read_text())["kubernetes_version"] is None
    assert "render mode: would run jobstack-engine-1, jobstack-engine-2 from jobstack-engine:0123456789ab" in run.output
    assert "render mode: would run jobstack-user-interface-1 from jobstack-user-interface:0123456789ab" in run.output


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_rendered_manifests_pass_strict_validation(renders, inventory):
    root, _ = renders[inventory]
    result = validate(root / inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 problems" in result.stdout


def test_rendered_files_are_in_apply_order(renders):
    root, _ = renders["production"]
    names = sorted(path.name for path in (root / "production" / "prod-eu-west-1").iterdir() if path.name[0].isdigit())
    stages = [name.split("-")[0] for name in names]
    assert stages == sorted(stages)
    assert names[0].startswith("10-cert_manager")
    assert (
        names.index("29-rabbitmq_cluster-01-namespace-jobstack.yaml")
        < names.index("34-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml")
        < names.index("40-engine-01-serviceaccount-engine.yaml")
        < names.index("50-user_interface-01-serviceaccount-user-interface.yaml")
    )


def test_production_rolls_out_one_region_after_the_other(renders):
    _, run = renders["production"]
    tasks = [line for line in run.output.splitlines() if line.startswith(("changed: [prod-", "ok: [prod-"))]
    hosts = [line.split("[", 1)[1].split("]", 1)[0] for line in tasks]
    written = [host for host, line in zip(hosts, tasks, strict=True) if line.startswith("changed:")]
    # Every file of eu-west is written before the first of us-east: serial 1, in inventory order.
    assert written and written == sorted(written, key=["prod-eu-west-1", "prod-us-east-1"].index)
    assert written[0] == "prod-eu-west-1" and written[-1] == "prod-us-east-1"


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_the_namespace_has_one_owner(renders, inventory):
    root, _ = renders[inventory]
    for cluster in CLUSTERS[inventory]:
        namespaces = sorted((root / inventory / cluster).glob("*-namespace-*.yaml"))
        assert [path.name for path in namespaces] == ["29-rabbitmq_cluster-01-namespace-jobstack.yaml"]


def test_production_broker_is_highly_available(renders):
    root, _ = renders["production"]
    docs = manifests(root / "production" / "prod-us-east-1")
    cluster = docs["34-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"]["spec"]
    assert cluster["replicas"] >= 3
    assert cluster["persistence"]["storageClassName"] == "premium-rwo"
    spread = cluster["override"]["statefulSet"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"
    # The operator's production guidance: at least 2 CPUs per node.
    assert cluster["resources"]["requests"]["cpu"] == "2"
    assert docs["35-rabbitmq_cluster-01-poddisruptionbudget-jobstack-rabbitmq.yaml"]["spec"]["maxUnavailable"] == 1
    queue = docs["38-rabbitmq_topology-01-queue-jobstack-jobs.yaml"]["spec"]
    assert queue == {**queue, "name": "jobstack.jobs", "type": "quorum", "durable": True}
    assert "arguments" not in queue
    policy = docs["37-rabbitmq_topology-04-policy-jobstack-jobs.yaml"]["spec"]
    assert policy["name"] == "jobstack-jobs" and policy["pattern"] == r"^jobstack\.jobs$"
    assert policy["applyTo"] == "queues"
    assert policy["definition"] == {
        "delivery-limit": 5,
        "dead-letter-exchange": "jobstack.dlx",
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
        "max-length": 100000,
    }


def test_dev_broker_fits_minikube(renders):
    root, _ = renders["dev"]
    docs = manifests(root / "dev" / "minikube-jobstack")
    cluster = docs["34-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"]["spec"]
    assert cluster["replicas"] == 1
    assert cluster["resources"] == {
        "requests": {"cpu": "200m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "768Mi"},
    }
    assert cluster["rabbitmq"]["additionalPlugins"] == ["rabbitmq_management", "rabbitmq_prometheus"]
    assert not any("poddisruptionbudget-jobstack-rabbitmq" in name for name in docs)
    # The volume is larger than RabbitMQ's free-disk limit, or the disk alarm would block publishers.
    assert cluster["persistence"]["storage"] == "4Gi"
    assert "disk_free_limit.absolute = 2GB" in cluster["rabbitmq"]["additionalConfig"].splitlines()


def test_an_inventory_dict_merges_with_the_role_defaults(renders):
    # inventories/dev sets three keys of engine_config; the others keep the role's defaults.
    root, _ = renders["dev"]
    config = engine_config(root / "dev" / "minikube-jobstack")
    for line in ("prefetch = 1", "log_format = text", "log_level = debug"):
        assert line in config.splitlines()
    for line in ("max_job_seconds = 60", "heartbeat = 30", "shutdown_grace_seconds = 60"):
        assert line in config.splitlines()


def test_broker_and_services_share_one_queue_name_and_delivery_limit(run_playbook, tmp_path):
    overrides = {
        "jobstack_jobs_queue": "orders.jobs",
        "jobstack_delivery_limit": 3,
        "jobstack_dead_letter_exchange": "orders.dlx",
    }
    run = run_playbook("site.yml", "staging", "-e", json.dumps(overrides), render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    directory = tmp_path / "staging" / "staging-eu-west-1"
    docs = manifests(directory)
    assert docs["38-rabbitmq_topology-01-queue-orders-jobs.yaml"]["spec"]["name"] == "orders.jobs"
    policy = next(doc for doc in by_kind(directory, "Policy") if doc["metadata"]["name"] == "jobstack-jobs")["spec"]
    assert policy["pattern"] == r"^orders\.jobs$"
    assert policy["definition"]["delivery-limit"] == 3 and policy["definition"]["dead-letter-exchange"] == "orders.dlx"
    assert "orders.dlx" in {doc["spec"]["name"] for doc in by_kind(directory, "Exchange")}
    binding = docs["39-rabbitmq_topology-01-binding-job-exchange-to-orders-jobs.yaml"]["spec"]
    assert binding["destination"] == "orders.jobs"
    scaled = by_kind(directory, "ScaledObject")[0]["spec"]["triggers"][0]["metadata"]
    assert scaled["queueName"] == "orders.jobs"
    config = engine_config(directory).splitlines()
    assert {"jobs_queue = orders.jobs", "max_deliveries = 3", "dead_letter_exchange = orders.dlx"} <= set(config)
    ui = next(doc for doc in by_kind(directory, "ConfigMap") if doc["metadata"]["name"] == "user-interface-config")
    assert "jobs_queue = orders.jobs" in ui["data"]["config.ini"].splitlines()


def test_renders_hold_no_secret_and_no_vault_value(renders, vault_password_file):
    """The registry credentials are loaded from the vault in staging and production: none may reach a file."""
    secrets = []
    for inventory in ("staging", "production"):
        vault = REPO_ROOT / "inventories" / inventory / "group_vars" / "all" / "vault.yml"
        clear = subprocess.run(
            [str(BIN / "ansible-vault"), "view", "--vault-password-file", str(vault_password_file), str(vault)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        secrets += [str(value) for value in yaml.safe_load(clear).values()]
    assert secrets and all(len(value) >= 8 for value in secrets)
    for inventory in KUBERNETES_INVENTORIES:
        root, _ = renders[inventory]
        for path in (root / inventory).rglob("*"):
            if path.is_file():
                text = path.read_text()
                assert not any(value in text for value in secrets), f"{path} holds a vault value"
                if path.suffix == ".yaml":
                    assert yaml.safe_load(text)["kind"] != "Secret", f"{path} is a Secret"


def test_second_render_reports_no_change(renders, run_playbook):
    root, _ = renders["dev"]
    again = run_playbook("site.yml", "dev", render_root=root)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap()["minikube-jobstack"]["changed"] == 0, again.output[-3000:]


def test_render_in_check_mode_writes_nothing(run_playbook, tmp_path):
    run = run_playbook("site.yml", "dev", "--check", "--diff", render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    assert not any(tmp_path.iterdir()), "check mode created files"
    assert "+apiVersion: rabbitmq.com/v1beta1" in run.output, "check mode shows the diff"


def test_render_removes_files_it_no_longer_renders(renders, run_playbook, tmp_path):
    source, _ = renders["dev"]
    shutil.copytree(source, tmp_path, dirs_exist_ok=True)
    stale = tmp_path / "dev" / "minikube-jobstack" / "45-old-01-configmap-gone.yaml"
    stale.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gone\n")
    run = run_playbook("site.yml", "dev", render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    assert not stale.exists()
    assert (tmp_path / "dev" / "minikube-jobstack" / "40-engine-05-deployment-engine.yaml").exists()


def test_check_mode_shows_the_diff_of_a_changed_value_and_keeps_the_file(renders, run_playbook, tmp_path):
    source, _ = renders["dev"]
    shutil.copytree(source, tmp_path, dirs_exist_ok=True)
    broker = tmp_path / "dev" / "minikube-jobstack" / "34-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"
    before = broker.read_text()
    run = run_playbook(
        "site.yml", "dev", "--check", "--diff", "-e", '{"rabbitmq_cluster_storage_size": "5Gi"}', render_root=tmp_path
    )
    assert run.returncode == 0, run.output[-3000:]
    assert "-    storage: 4Gi" in run.output and "+    storage: 5Gi" in run.output
    assert broker.read_text() == before
