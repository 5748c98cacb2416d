"""jobstack.deploy is a real collection: the built artifact holds what a user needs and no test
scaffolding, installs into an empty collections path, renders every inventory from outside the
checkout exactly as the checkout does, and documents every role's entry points."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import BIN, INVENTORIES, REPO_ROOT, clean_ansible_env, render_args

ROLES = sorted(path.name for path in (REPO_ROOT / "roles").iterdir() if (path / "tasks").is_dir())


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO_ROOT)],
        env=clean_ansible_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    (built,) = out.glob("jobstack-deploy-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def installed(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The artifact installed into an empty collections path; the environment that uses it and nothing else."""
    collections = tmp_path_factory.mktemp("collections")
    env = clean_ansible_env()
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    # The dependencies (kubernetes.core, community.docker, community.general) come with the ansible package.
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(collections), str(artifact)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (collections / "ansible_collections" / "jobstack" / "deploy" / "MANIFEST.json").is_file()
    return env


def test_the_artifact_holds_what_a_user_needs_and_no_test_scaffolding(artifact: Path):
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
    for needed in (
        "playbooks/site.yml",
        "playbooks/teardown.yml",
        "plugins/action/render_manifests.py",
        "plugins/filter/jobstack.py",
        "meta/runtime.yml",
        "changelogs/changelog.yaml",
        "services/engine/Dockerfile",
        "services/user_interface/Dockerfile",
        "tools/offline_images/build.sh",
        *(f"roles/{role}/meta/argument_specs.yml" for role in ROLES),
    ):
        assert needed in names, needed
    tops = {name.split("/")[0] for name in names}
    for unwanted in (
        "molecule",
        "tests",
        "inventories",
        "collections",
        "scripts",
        "bench",
        ".ci",
        "Makefile",
        "site.yml",
        "ansible.cfg",
    ):
        assert unwanted not in tops, unwanted
    assert not [name for name in names if name.startswith("tools/") and not name.startswith("tools/offline_images")], (
        names
    )
    assert not [name for name in names if "__pycache__" in name or name.startswith("changelogs/fragments/")]


@pytest.fixture(scope="module")
def installed_renders(installed: dict[str, str], tmp_path_factory: pytest.TempPathFactory, vault_password_file: Path):
    """Every inventory rendered by `ansible-playbook jobstack.deploy.site` from a directory that holds only the
    inventories (no checkout, no ansible.cfg), in parallel: {inventory: (render root, completed process)}."""
    project = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO_ROOT / "inventories", project / "inventories")
    started = {}
    for inventory in INVENTORIES:
        root = project / "rendered-by-collection"
        command = [str(BIN / "ansible-playbook"), "jobstack.deploy.site", "-i", f"inventories/{inventory}"]
        command += ["--vault-password-file", str(vault_password_file), *render_args(root)]
        process = subprocess.Popen(
            command, cwd=project, env=installed, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started[inventory] = (root, process)
    return {
        inventory: (root, process.communicate(timeout=600)[0], process.returncode)
        for inventory, (root, process) in started.items()
    }


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_installed_collection_renders_every_inventory_as_the_checkout_does(installed_renders, renders, inventory):
    root, output, returncode = installed_renders[inventory]
    assert returncode == 0, output[-3000:]
    # The images role ran from the installed collection and found its build context there.
    assert re.search(r"TASK \[jobstack\.deploy\.images : Set the image references", output)
    checkout_root, _ = renders[inventory]
    ours = {path.relative_to(root): path.read_bytes() for path in (root / inventory).rglob("*") if path.is_file()}
    theirs = {
        path.relative_to(checkout_root): path.read_bytes()
        for path in (checkout_root / inventory).rglob("*")
        if path.is_file()
    }
    assert ours and ours == theirs


def test_ansible_doc_shows_every_role_and_entry_point_of_the_installed_collection(
    installed: dict[str, str], tmp_path: Path
):
    def ansible_doc(*args: str) -> str:
        command = [str(BIN / "ansible-doc"), "-t", "role", *args]
        return subprocess.run(command, env=installed, cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    listing = ansible_doc("-l", "jobstack.deploy")
    for role in ROLES:
        assert re.search(rf"^jobstack\.deploy\.{role}\b", listing, flags=re.MULTILINE), role
        entry_points = yaml.safe_load((REPO_ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"
        ]
        doc = ansible_doc(f"jobstack.deploy.{role}")
        # ansible-doc marks the name (*name* without a terminal); the short description follows.
        shown = re.findall(r"^ENTRY POINT: \W*(\w+)\W* - ", doc, flags=re.MULTILINE)
        assert shown == list(entry_points), f"{role}: {shown}"


def test_the_changelog_is_kept_with_fragments_that_lint():
    for command in (["lint"], ["lint-changelog-yaml", "changelogs/changelog.yaml"]):
        result = subprocess.run(
            [str(BIN / "antsibull-changelog"), *command], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    assert list((REPO_ROOT / "changelogs" / "fragments").glob("*.yml"))
