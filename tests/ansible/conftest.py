"""Fixtures for the Ansible tests: they run the real ansible-playbook against the inventories.

Renders go to a temporary directory (``-e jobstack_render_root=...``), never to the repository's
rendered/. The staging and production vault files are encrypted with the documented demo
password (README.md, "Secrets"), which the tests write to a temporary file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORIES = ("dev", "staging", "production")
DEMO_VAULT_PASSWORD = "jobstack-demo"  # noqa: S105 - the documented demo password of the example vaults
# Image tag of the test renders.
IMAGE_TAG = "0123456789ab"
# Clusters per inventory (the hosts of group clusters).
CLUSTERS = {
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


@pytest.fixture(scope="session")
def vault_password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vault") / "password"
    path.write_text(DEMO_VAULT_PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env


def playbook_command(
    playbook: str, inventory: str, vault_password_file: Path, *args: str, render_root: Path | None = None
) -> list[str]:
    """ansible-playbook command line; args come last, so a test's -e overrides the render defaults."""
    command = [str(BIN / "ansible-playbook"), playbook, "-i", f"inventories/{inventory}"]
    command += ["--vault-password-file", str(vault_password_file)]
    if render_root is not None:
        # A fixed image tag keeps renders independent of the git state of services/ (the default tag
        # is the last commit, refused outside dev while services/ has uncommitted changes).
        command += [
            "-e",
            "render_only=true",
            "-e",
            f"jobstack_render_root={render_root}",
            "-e",
            f"images_tag={IMAGE_TAG}",
        ]
    return [*command, *args]


@pytest.fixture(scope="session")
def run_playbook(ansible_env: dict[str, str], vault_password_file: Path):
    """Run ansible-playbook from the repository root; returns a PlaybookRun."""

    def run(playbook: str, inventory: str, *args: str, render_root: Path | None = None) -> PlaybookRun:
        command = playbook_command(playbook, inventory, vault_password_file, *args, render_root=render_root)
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=ansible_env, capture_output=True, text=True, timeout=600, check=False
        )
        return PlaybookRun(result.returncode, result.stdout + result.stderr)

    return run


@pytest.fixture(scope="session")
def renders(
    tmp_path_factory: pytest.TempPathFactory, ansible_env: dict[str, str], vault_password_file: Path
) -> dict[str, tuple[Path, PlaybookRun]]:
    """Every inventory rendered once, the three in parallel: {inventory: (render root, run)}."""
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


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Run tools/validate_manifests.py over paths, as CI does."""
    return subprocess.run(
        [str(BIN / "python"), str(REPO_ROOT / "tools" / "validate_manifests.py"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )


def ansible_playbook(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the repository root with the test environment."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
