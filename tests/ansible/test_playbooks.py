"""Every playbook parses for every inventory; the internal role refuses to run on its own."""

from __future__ import annotations

import subprocess

import pytest
from conftest import BIN, INVENTORIES, REPO_ROOT, ansible_playbook

PLAYBOOKS = [
    "site.yml",
    "playbooks/teardown.yml",
    "playbooks/cluster.yml",
    "playbooks/broker.yml",
    "playbooks/apps.yml",
    "playbooks/smoke_test.yml",
]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_syntax_check_passes(ansible_env, vault_password_file, inventory):
    result = ansible_playbook(
        ansible_env,
        "--syntax-check",
        "-i",
        f"inventories/{inventory}",
        "--vault-password-file",
        str(vault_password_file),
        *PLAYBOOKS,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_layers_region_and_cluster_values(ansible_env, vault_password_file, inventory):
    result = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", f"inventories/{inventory}", "--graph", "clusters"],
        cwd=REPO_ROOT,
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "@clusters:" in result.stdout


def test_production_rolls_out_one_region_at_a_time():
    import yaml

    rollout = yaml.safe_load((REPO_ROOT / "playbooks" / "rollout.yml").read_text())[0]
    assert rollout["serial"] == 1 and rollout["max_fail_percentage"] == 0
    stages = [task.get("ansible.builtin.include_tasks") for task in rollout["tasks"]]
    site = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((REPO_ROOT / "site.yml").read_text())]
    assert site == ["playbooks/preflight.yml", "playbooks/cluster.yml", "playbooks/images.yml", "playbooks/rollout.yml"]
    assert (
        stages.index("tasks/stage_broker.yml")
        < stages.index("tasks/stage_apps.yml")
        < stages.index("tasks/stage_smoke_test.yml")
    )


def test_internal_role_refuses_to_run_alone(ansible_env):
    result = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-m", "ansible.builtin.include_role", "-a", "name=_common"],
        cwd=REPO_ROOT,
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "roles/_common is internal to jobstack" in result.stdout + result.stderr


def test_vault_files_are_encrypted():
    for inventory in ("staging", "production"):
        text = (REPO_ROOT / "inventories" / inventory / "group_vars" / "all" / "vault.yml").read_text()
        assert text.startswith("$ANSIBLE_VAULT;1.1;AES256")


def test_minikube_scenario_reports_not_run_without_minikube(tmp_path):
    import shutil as _shutil

    if _shutil.which("minikube"):
        pytest.skip("minikube is installed here; the scenario would run")
    result = subprocess.run(
        [str(REPO_ROOT / "molecule" / "minikube" / "run.sh")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "molecule minikube: NOT RUN (minikube not installed on this machine)"
    assert "passed" not in result.stdout.lower()
