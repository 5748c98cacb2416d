"""Tags select: a stage or a role given to --tags runs exactly its tasks (plus the ones tagged always)."""

from __future__ import annotations

from pathlib import Path

import pytest

ALWAYS = {"render-info.json"}
# The broker's stages in dev (one node: no PodDisruptionBudget, stage 35).
BROKER_STAGES = {
    "29-rabbitmq_cluster",
    "30-rabbitmq_tls",
    "31-rabbitmq_tls",
    "32-rabbitmq_tls",
    "33-rabbitmq_cluster",
    "34-rabbitmq_cluster",
    *(f"{stage}-rabbitmq_topology" for stage in (36, 37, 38, 39)),
}


def rendered(root: Path) -> set[str]:
    return {path.name for path in (root / "dev" / "minikube-jobstack").iterdir()}


def stages(names: set[str]) -> set[str]:
    return {name.split("-0")[0] for name in names - ALWAYS}


@pytest.mark.parametrize(
    ("tags", "expected_stages"),
    [
        ("engine", {"40-engine"}),
        ("engine_deploy", {"40-engine"}),
        ("user_interface", {"50-user_interface"}),
        ("apps", {"40-engine", "50-user_interface"}),
        ("broker", {"10-cert_manager", "20-rabbitmq_operator", "21-rabbitmq_operator", *BROKER_STAGES}),
        ("rabbitmq_cluster", BROKER_STAGES),
        ("monitoring", set()),
        ("preflight", set()),
    ],
)
def test_a_tag_renders_only_its_stage_or_role(run_playbook, tmp_path, tags, expected_stages):
    run = run_playbook("site.yml", "dev", "--tags", tags, render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    assert stages(rendered(tmp_path)) == expected_stages, run.output[-3000:]


def test_tag_engine_runs_the_engine_tasks_and_no_other_role(run_playbook, tmp_path):
    run = run_playbook("site.yml", "dev", "--tags", "engine", render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    # Ansible validates every imported role's arguments whatever the tags (that task is tagged always).
    names = [name for name in run.task_names() if "Validating arguments against arg spec" not in name]
    roles = {name.split(" : ")[0] for name in names if " : " in name}
    # engine and the internal roles it calls; _common's preflight (always), images (tag and references, always).
    assert roles == {
        "jobstack.deploy._common",
        "jobstack.deploy.engine",
        "jobstack.deploy._service",
        "jobstack.deploy.images",
    }
    assert "jobstack.deploy._service : Build from the role templates the Kubernetes objects of the engine" in names
    assert not any("user_interface" in name or "rabbitmq" in name or "cert_manager" in name for name in names)


def test_tag_preflight_checks_everything_and_changes_nothing(run_playbook, tmp_path):
    run = run_playbook("site.yml", "production", "--tags", "preflight", render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    names = run.task_names()
    for role in (
        "images",
        "cert_manager",
        "rabbitmq_operator",
        "rabbitmq_cluster",
        "engine",
        "user_interface",
        "monitoring",
        "smoke_test",
    ):
        assert any(
            name.startswith(f"jobstack.deploy.{role} : Validating arguments against arg spec 'preflight'")
            for name in names
        ), role
    assert not any(tmp_path.rglob("*.yaml"))
