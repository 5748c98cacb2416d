"""A new environment is a new inventory directory and nothing else: the code asks for capabilities
(who provides the cluster, how images are delivered, the fewest broker nodes), never for a name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, ansible_playbook, render_args, validate


def throwaway_inventory(tmp_path: Path, source: str, name: str) -> Path:
    """inventories/<source> copied to <tmp>/inventories/<name>, with only its environment name changed."""
    target = tmp_path / "inventories" / name
    shutil.copytree(REPO_ROOT / "inventories" / source, target)
    environment = target / "group_vars" / "all" / "environment.yml"
    settings = yaml.safe_load(environment.read_text())
    settings["jobstack_environment"] = name
    environment.write_text("---\n" + yaml.safe_dump(settings))
    return target


@pytest.mark.parametrize(("source", "name"), [("staging", "qa"), ("dev", "sandbox")])
def test_a_throwaway_environment_renders_and_validates(ansible_env, vault_password_file, tmp_path, source, name):
    inventory = throwaway_inventory(tmp_path, source, name)
    render_root = tmp_path / "rendered"
    result = ansible_playbook(
        ansible_env,
        "site.yml",
        "-i",
        str(inventory),
        "--vault-password-file",
        str(vault_password_file),
        *render_args(render_root),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    clusters = sorted(path.name for path in (render_root / name).iterdir())
    assert clusters == sorted(path.name for path in (inventory / "host_vars").iterdir())
    for cluster in clusters:
        assert json.loads((render_root / name / cluster / "render-info.json").read_text())["environment"] == name
    checked = validate(render_root / name)
    assert checked.returncode == 0 and ", 0 problems" in checked.stdout, checked.stdout + checked.stderr
