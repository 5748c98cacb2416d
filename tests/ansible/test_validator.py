"""tools/validate_manifests.py: passes what is valid, and catches what the API server would reject."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, REPO_ROOT, validate


@pytest.fixture
def production_copy(renders, tmp_path) -> Path:
    root, run = renders["production"]
    assert run.returncode == 0, run.output[-3000:]
    target = tmp_path / "prod-eu-west-1"
    shutil.copytree(root / "production" / "prod-eu-west-1", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_unknown_field_in_builtin_kind_is_an_error(production_copy):
    edit(
        production_copy / "40-engine-06-deployment-engine.yaml", "kind: Deployment\n", "kind: Deployment\nreplica: 2\n"
    )
    result = validate(production_copy)
    assert result.returncode == 1
    assert "40-engine-06-deployment-engine.yaml" in result.stdout and "'replica' was unexpected" in result.stdout


def test_unknown_field_in_custom_resource_is_an_error(production_copy):
    edit(
        production_copy / "30-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml",
        "  replicas: 3\n",
        "  replicas: 3\n  replica: 3\n",
    )
    result = validate(production_copy)
    assert result.returncode == 1
    assert "spec: Additional properties are not allowed ('replica' was unexpected)" in result.stdout


def test_wrong_type_in_custom_resource_is_an_error(production_copy):
    edit(production_copy / "32-rabbitmq_topology-02-policy-jobstack-jobs.yaml", "applyTo: queues", "applyTo: topics")
    result = validate(production_copy)
    assert result.returncode == 1
    assert "spec.applyTo" in result.stdout


def test_preserved_unknown_fields_stay_allowed(production_copy):
    edit(
        production_copy / "32-rabbitmq_topology-02-policy-jobstack-jobs.yaml",
        "definition:\n",
        "definition:\n    max-length: 100000\n",
    )
    assert validate(production_copy).returncode == 0


def test_unknown_kind_is_an_error(production_copy):
    (production_copy / "60-extra-01-widget-w.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"
    )
    result = validate(production_copy)
    assert result.returncode == 1
    assert "unknown kind Widget" in result.stdout


def test_missing_render_info_is_an_error(production_copy):
    (production_copy / "render-info.json").unlink()
    result = validate(production_copy)
    assert result.returncode == 1
    assert "no render-info.json" in result.stdout


def test_crd_directory_comes_from_the_environment(production_copy, tmp_path):
    env_result = subprocess.run(
        [str(BIN / "python"), str(REPO_ROOT / "tools" / "validate_manifests.py"), str(production_copy)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env={"JOBSTACK_CRDS_DIR": str(tmp_path / "nowhere"), "PATH": str(BIN)},
    )
    assert env_result.returncode == 2
    assert "nowhere" in env_result.stderr
