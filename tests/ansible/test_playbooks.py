"""The playbooks parse for every inventory, variables layer as documented, the internal roles refuse to run alone."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import BIN, INVENTORIES, REPO_ROOT, ansible_playbook


@pytest.mark.parametrize("inventory", [*INVENTORIES, "rehearsal"])
def test_every_playbook_passes_the_syntax_check_with_every_inventory(ansible_env, vault_password_file, inventory):
    playbooks = sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "playbooks").glob("*.yml"))
    assert {"playbooks/site.yml", "playbooks/drain.yml", "playbooks/drift.yml"} <= set(playbooks), playbooks
    result = ansible_playbook(
        ansible_env,
        "--syntax-check",
        "-i",
        f"inventories/{inventory}",
        "--vault-password-file",
        str(vault_password_file),
        # drain.yml's plays target the groups the request names.
        "-e",
        "drain_from=none",
        *playbooks,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def host_vars(ansible_env, vault_password_file, inventory: str, host: str) -> dict:
    result = subprocess.run(
        [
            str(BIN / "ansible-inventory"),
            "-i",
            f"inventories/{inventory}",
            "--vault-password-file",
            str(vault_password_file),
            "--host",
            host,
        ],
        cwd=REPO_ROOT,
        env=ansible_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_inventory_layers_environment_region_and_cluster_values(ansible_env, vault_password_file):
    east = host_vars(ansible_env, vault_password_file, "production", "prod-us-east-1")
    west = host_vars(ansible_env, vault_password_file, "production", "prod-eu-west-1")
    # Environment (group all): the same for both clusters.
    assert east["jobstack_environment"] == west["jobstack_environment"] == "production"
    assert east["engine_autoscaling_max_replicas"] == west["engine_autoscaling_max_replicas"] == 30
    # Region (group us_east / eu_west): its own host name.
    assert (east["jobstack_region"], east["user_interface_ingress_host"]) == ("us-east-1", "jobs.us-east-1.example.com")
    assert (west["jobstack_region"], west["user_interface_ingress_host"]) == ("eu-west-1", "jobs.eu-west-1.example.com")
    # Cluster (host_vars): its own kubeconfig context.
    assert (east["jobstack_kube_context"], west["jobstack_kube_context"]) == ("prod-us-east-1", "prod-eu-west-1")


def test_an_inventory_states_only_what_differs_from_the_base_layer(ansible_env, vault_password_file):
    # The base (role defaults and roles/_common/defaults/main.yml) is not restated by any inventory.
    staging = host_vars(ansible_env, vault_password_file, "staging", "staging-eu-west-1")
    for name in (
        "jobstack_namespace",
        "jobstack_target",
        "jobstack_render_dir",
        "ansible_connection",
        "engine_keda_queue_length",
    ):
        assert name not in staging, f"inventories/staging restates {name}"


@pytest.mark.parametrize("role", ["_common", "_service"])
def test_internal_role_refuses_to_run_alone(ansible_env, role):
    result = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-m", "ansible.builtin.include_role", "-a", f"name=jobstack.deploy.{role}"],
        cwd=REPO_ROOT,
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert f"roles/{role} is internal to jobstack" in result.stdout + result.stderr


def test_vault_files_are_encrypted():
    for inventory in ("staging", "production"):
        text = (REPO_ROOT / "inventories" / inventory / "group_vars" / "all" / "vault.yml").read_text()
        assert text.startswith("$ANSIBLE_VAULT;1.1;AES256")


def test_minikube_scenario_reports_not_run_without_minikube(tmp_path):
    if shutil.which("minikube"):
        pytest.skip("minikube is installed here; the scenario would run")
    result = subprocess.run(
        [str(REPO_ROOT / "molecule" / "minikube" / "run.sh")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "molecule minikube: NOT RUN (minikube not installed on this machine)"
    assert "passed" not in result.stdout.lower()
