"""tools/validate_manifests.py: passes what is valid, and catches what the API server would reject."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, validate

CRDS = REPO_ROOT / "tools" / "crds"


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
        production_copy / "40-engine-05-deployment-engine.yaml", "kind: Deployment\n", "kind: Deployment\nreplica: 2\n"
    )
    result = validate(production_copy)
    assert result.returncode == 1
    assert "40-engine-05-deployment-engine.yaml" in result.stdout and "'replica' was unexpected" in result.stdout


def test_unknown_field_in_custom_resource_is_an_error(production_copy):
    edit(
        production_copy / "34-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml",
        "  replicas: 3\n",
        "  replicas: 3\n  replica: 3\n",
    )
    result = validate(production_copy)
    assert result.returncode == 1
    assert "spec: Additional properties are not allowed ('replica' was unexpected)" in result.stdout


def test_wrong_type_in_custom_resource_is_an_error(production_copy):
    edit(production_copy / "37-rabbitmq_topology-04-policy-jobstack-jobs.yaml", "applyTo: queues", "applyTo: topics")
    result = validate(production_copy)
    assert result.returncode == 1
    assert "spec.applyTo" in result.stdout


def test_preserved_unknown_fields_stay_allowed(production_copy):
    edit(
        production_copy / "37-rabbitmq_topology-04-policy-jobstack-jobs.yaml",
        "definition:\n",
        "definition:\n    max-length-bytes: 100000000\n",
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


def crd_table() -> dict[str, str]:
    """file -> sha256, from the table of tools/crds/README.md."""
    rows = re.findall(
        r"^\| `([^`]+\.yaml)` \|.*\| `([0-9a-f]{64})` \|$", (CRDS / "README.md").read_text(), flags=re.MULTILINE
    )
    return dict(rows)


def test_every_vendored_crd_matches_the_sha256_of_its_readme_row():
    table = crd_table()
    files = {path.name for path in CRDS.glob("*.yaml")}
    assert files == set(table), f"without a row: {files - set(table)}; row without a file: {set(table) - files}"
    for name, digest in table.items():
        assert hashlib.sha256((CRDS / name).read_bytes()).hexdigest() == digest, (
            f"{name} differs from its pinned sha256"
        )


def test_the_vendored_crds_cover_every_kind_the_roles_render_or_will_render():
    kinds = set()
    for path in CRDS.glob("*.yaml"):
        kinds.add(yaml.safe_load(path.read_text())["spec"]["names"]["kind"])
    assert kinds >= {
        "RabbitmqCluster",
        "Queue",
        "Policy",
        "Exchange",
        "Binding",
        "User",
        "Permission",
        "Vhost",
        "Shovel",
        "Federation",
        "ScaledObject",
        "TriggerAuthentication",
        "Certificate",
        "Issuer",
        "ClusterIssuer",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    }


def git_tracked_copy(target: Path) -> Path:
    """The repository's git-tracked files, copied to target (links stay links)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, names):
        source = REPO_ROOT / name.decode()
        destination = target / name.decode()
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            destination.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, destination)
    return target


def test_the_validator_needs_nothing_outside_the_repository(renders, tmp_path):
    # A clone placed where no sibling folder exists: the validator reads its CRDs from the clone alone.
    clone = git_tracked_copy(tmp_path / "alone" / "jobstack")
    assert [path.name for path in (tmp_path / "alone").iterdir()] == ["jobstack"]
    root, _ = renders["production"]
    result = validate(root / "production", validator=clone / "tools" / "validate_manifests.py")
    assert result.returncode == 0 and ", 0 problems" in result.stdout, result.stdout + result.stderr
    # And it really reads them there: without them, it stops and says where it looked.
    shutil.rmtree(clone / "tools" / "crds")
    result = validate(root / "production", validator=clone / "tools" / "validate_manifests.py")
    assert result.returncode == 2
    assert f"no CustomResourceDefinition in {clone / 'tools' / 'crds'}" in result.stderr
