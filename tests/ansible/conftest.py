"""Fixtures for the Ansible tests: they run the real ansible-playbook against the inventories.

Renders go to a temporary directory (``-e jobstack_render_root=...``), never to the repository's
rendered/. The staging and production vault files are encrypted with the documented demo
password (README.md, "Secrets"), which the tests write to a temporary file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Inventories whose target is Kubernetes (they render manifests), and all of them.
KUBERNETES_INVENTORIES = ("dev", "staging", "production")
INVENTORIES = ("local", *KUBERNETES_INVENTORIES)
DEMO_VAULT_PASSWORD = "jobstack-demo"  # noqa: S105 - the documented demo password of the example vaults
# Image tag of the test renders.
IMAGE_TAG = "0123456789ab"
# Clusters per inventory (the hosts of group clusters), in rollout order.
CLUSTERS = {
    "local": ["docker-local"],
    "dev": ["minikube-jobstack"],
    "staging": ["staging-eu-west-1"],
    "production": ["prod-eu-west-1", "prod-us-east-1"],
}


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host, e.g. {'minikube-jobstack': {'changed': 0, ...}}."""
        counters: dict[str, dict[str, int]] = {}
        for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", self.output, flags=re.MULTILINE):
            counters[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", fields)}
        return counters

    def task_names(self) -> list[str]:
        """Names of the tasks that ran, in order, as the default callback prints them."""
        return re.findall(r"^TASK \[(.*?)\] \*", self.output, flags=re.MULTILINE)


@pytest.fixture(scope="session")
def vault_password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vault") / "password"
    path.write_text(DEMO_VAULT_PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def clean_ansible_env() -> dict[str, str]:
    """The environment of the test's own shell minus every ANSIBLE_* setting, plus the venv on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


@pytest.fixture(scope="session")
def ansible_env() -> dict[str, str]:
    env = clean_ansible_env()
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    return env


def render_args(render_root: Path) -> list[str]:
    """Render mode into render_root. A fixed image tag keeps renders independent of the git state of
    services/ (the default tag is the last commit, refused for a registry while services/ has
    uncommitted changes)."""
    return ["-e", "render_only=true", "-e", f"jobstack_render_root={render_root}", "-e", f"images_tag={IMAGE_TAG}"]


def playbook_command(
    playbook: str, inventory: str, vault_password_file: Path, *args: str, render_root: Path | None = None
) -> list[str]:
    """ansible-playbook command line; args come last, so a test's -e overrides the render defaults."""
    command = [str(BIN / "ansible-playbook"), playbook, "-i", f"inventories/{inventory}"]
    command += ["--vault-password-file", str(vault_password_file)]
    if render_root is not None:
        command += render_args(render_root)
    return [*command, *args]


@pytest.fixture(scope="session")
def run_playbook(ansible_env: dict[str, str], vault_password_file: Path):
    """Run ansible-playbook from the repository root; returns a PlaybookRun."""

    def run(
        playbook: str, inventory: str, *args: str, render_root: Path | None = None, env: dict[str, str] | None = None
    ) -> PlaybookRun:
        command = playbook_command(playbook, inventory, vault_password_file, *args, render_root=render_root)
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**ansible_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return PlaybookRun(result.returncode, result.stdout + result.stderr)

    return run


@pytest.fixture(scope="session")
def renders(
    tmp_path_factory: pytest.TempPathFactory, ansible_env: dict[str, str], vault_password_file: Path
) -> dict[str, tuple[Path, PlaybookRun]]:
    """Every inventory rendered once, all in parallel: {inventory: (render root, run)}."""
    started = {}
    for inventory in INVENTORIES:
        root = tmp_path_factory.mktemp(f"render-{inventory}")
        command = playbook_command("site.yml", inventory, vault_password_file, render_root=root)
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=ansible_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started[inventory] = (root, process)
    results = {}
    for inventory, (root, process) in started.items():
        output, _ = process.communicate(timeout=600)
        results[inventory] = (root, PlaybookRun(process.returncode, output))
    return results


def validate(*paths: Path, validator: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run tools/validate_manifests.py (of this checkout, or the given copy) over paths, as CI does."""
    script = validator or REPO_ROOT / "tools" / "validate_manifests.py"
    return subprocess.run(
        [str(BIN / "python"), str(script), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=script.parents[1],
    )


def ansible_playbook(env: dict[str, str], *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook (from the repository root unless told) with the given environment."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def json_results(output: str) -> list[dict[str, Any]]:
    """Per-host task results of a run with the ansible.posix.json callback, in order: each is
    {'task': name, 'host': host, 'result': {...}}."""
    document = json.loads(output[output.index("{") :])
    results = []
    for play in document["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                results.append({"task": task["task"]["name"], "host": host, "result": result})
    return results
