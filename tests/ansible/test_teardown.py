"""Shared-cluster safety of playbooks/teardown.yml: a protected environment (production) is torn down only
with its confirmation and a --limit; cluster-wide operators and their CRDs stay unless asked, and even then
only what jobstack installed goes. The refusals are checked before anything is contacted (the runs end at
the render-mode refusal, which comes after the guard, so no cluster is needed)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO_ROOT, json_results

GUARD = "Refuse to tear down a protected environment without its confirmation and a --limit."
RENDER_REFUSAL = "render_only is true: render mode only writes files; run the teardown without it."


def teardown(run_playbook, tmp_path, inventory: str, *args: str):
    run = run_playbook(
        "playbooks/teardown.yml",
        inventory,
        *args,
        render_root=tmp_path,
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    failed = [item for item in json_results(run.output) if item["result"].get("failed")]
    return run, failed


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--limit", "eu_west"],
        ["-e", "teardown_confirm=production"],
        ["-e", "teardown_confirm=staging", "--limit", "eu_west"],
    ],
    ids=["nothing", "limit-only", "confirmation-only", "wrong-confirmation"],
)
def test_production_is_not_torn_down_without_its_confirmation_and_a_limit(run_playbook, tmp_path, args):
    run, failed = teardown(run_playbook, tmp_path, "production", *args)
    assert run.returncode != 0
    assert {item["task"] for item in failed} == {GUARD}
    assert failed[0]["result"]["msg"].startswith(
        "production is protected (jobstack_protected): tear it down only with -e teardown_confirm=production and "
        "--limit <region or cluster>"
    )


def test_production_with_its_confirmation_and_a_limit_passes_the_guard(run_playbook, tmp_path):
    run, failed = teardown(
        run_playbook, tmp_path, "production", "-e", "teardown_confirm=production", "--limit", "eu_west"
    )
    assert run.returncode != 0
    # Past the guard: the next check refuses render mode, before anything is contacted.
    assert [item["result"]["msg"] for item in failed] == [RENDER_REFUSAL]
    assert {item["host"] for item in failed} == {"prod-eu-west-1"}


def test_an_unprotected_environment_needs_no_confirmation(run_playbook, tmp_path):
    _, failed = teardown(run_playbook, tmp_path, "staging")
    assert [item["result"]["msg"] for item in failed] == [RENDER_REFUSAL]


def test_cluster_wide_releases_stay_unless_asked_and_only_ours_go():
    tasks = yaml.safe_load((REPO_ROOT / "playbooks" / "teardown.yml").read_text())[0]["tasks"]
    cluster_wide = [
        task for task in tasks if task["name"].startswith(("Delete the RabbitMQ operators", "Delete cert-manager"))
    ]
    assert len(cluster_wide) == 2
    for task in cluster_wide:
        assert "teardown_cluster_wide | default(false) | bool" in task["when"]
    for role, owner in (("cert_manager", "__cert_manager_owner == 'ours'"), ("rabbitmq_operator", "== 'ours'")):
        teardown_tasks = yaml.safe_load((REPO_ROOT / "roles" / role / "tasks" / "teardown.yml").read_text())
        deletes = [task for task in teardown_tasks if task.get("vars", {}).get("_common_manifest_state") == "absent"]
        assert deletes and all(any(owner in condition for condition in task["when"]) for task in deletes)
    assert "teardown_operators" not in json.dumps(tasks)
