"""Render mode: every inventory renders, validates strictly and renders again without change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import BIN, CLUSTERS, INVENTORIES, ansible_playbook, validate


def manifests(directory: Path) -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_render_writes_every_cluster_and_contacts_no_cluster(renders, inventory):
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
    assert "Render mode wrote" in run.output


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_rendered_manifests_pass_strict_validation(renders, inventory):
    root, _ = renders[inventory]
    result = validate(root / inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 problems" in result.stdout


def test_rendered_files_are_in_apply_order(renders):
    root, _ = renders["production"]
    names = sorted(path.name for path in (root / "production" / "prod-eu-west-1").iterdir())
    stages = [name.split("-")[0] for name in names if name[0].isdigit()]
    assert stages == sorted(stages)
    order = [name for name in names if name[0].isdigit()]
    assert order.index("29-rabbitmq_cluster-01-namespace-jobstack.yaml") < order.index(
        "30-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"
    )
    assert order[0].startswith("10-cert_manager")


def test_production_broker_is_highly_available(renders):
    root, _ = renders["production"]
    docs = manifests(root / "production" / "prod-us-east-1")
    cluster = docs["30-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"]["spec"]
    assert cluster["replicas"] >= 3
    assert cluster["persistence"]["storageClassName"]
    spread = cluster["override"]["statefulSet"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert docs["31-rabbitmq_cluster-01-poddisruptionbudget-jobstack-rabbitmq.yaml"]["spec"]["maxUnavailable"] == 1
    queue = docs["32-rabbitmq_topology-01-queue-jobstack-jobs.yaml"]["spec"]
    assert queue == {**queue, "name": "jobstack.jobs", "type": "quorum", "durable": True}
    assert "arguments" not in queue
    policy = docs["32-rabbitmq_topology-02-policy-jobstack-jobs.yaml"]["spec"]
    assert policy["name"] == "jobstack-jobs" and policy["pattern"] == r"^jobstack\.jobs$"
    assert policy["applyTo"] == "queues"
    assert policy["definition"] == {"delivery-limit": 5, "dead-letter-exchange": "jobstack.dlx"}


def test_dev_broker_fits_minikube(renders):
    root, _ = renders["dev"]
    docs = manifests(root / "dev" / "minikube-jobstack")
    cluster = docs["30-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"]["spec"]
    assert cluster["replicas"] == 1
    assert cluster["rabbitmq"]["additionalPlugins"] == ["rabbitmq_management", "rabbitmq_prometheus"]
    assert not any("poddisruptionbudget-jobstack-rabbitmq" in name for name in docs)


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


def test_render_never_writes_secret_values(ansible_env, tmp_path):
    playbook = tmp_path / "secret.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render a Secret through roles/_common",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {"jobstack_render_only": True, "jobstack_render_dir": str(tmp_path / "out")},
                    "tasks": [
                        {
                            "name": "Apply",
                            "ansible.builtin.include_role": {"name": "_common", "tasks_from": "apply.yml"},
                            "vars": {
                                "_common_stage": "90-test",
                                "_common_objects": [
                                    {
                                        "apiVersion": "v1",
                                        "kind": "Secret",
                                        "metadata": {"name": "registry", "namespace": "jobstack"},
                                        "type": "Opaque",
                                        "stringData": {"password": "s3cr3t-value"},
                                        "data": {"token": "czNjcjN0LXZhbHVl"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ]
        )
    )
    result = ansible_playbook(
        ansible_env, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={BIN / 'python'}",
        str(playbook),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    written = (tmp_path / "out" / "90-test-01-secret-registry.yaml").read_text()
    assert "s3cr3t-value" not in written and "czNjcjN0LXZhbHVl" not in written
    assert yaml.safe_load(written)["stringData"] == {"password": "REDACTED"}


def test_check_mode_shows_the_diff_of_a_changed_value_and_keeps_the_file(renders, run_playbook, tmp_path):
    source, _ = renders["dev"]
    shutil.copytree(source, tmp_path, dirs_exist_ok=True)
    broker = tmp_path / "dev" / "minikube-jobstack" / "30-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"
    before = broker.read_text()
    run = run_playbook(
        "site.yml", "dev", "--check", "--diff", "-e", '{"rabbitmq_cluster_storage_size": "2Gi"}', render_root=tmp_path
    )
    assert run.returncode == 0, run.output[-3000:]
    assert "-    storage: 1Gi" in run.output and "+    storage: 2Gi" in run.output
    assert broker.read_text() == before
