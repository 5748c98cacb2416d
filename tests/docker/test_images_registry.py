"""The images role for staging/production: build, push to a registry, deploy by digest.

A real registry (Debian's docker-registry with htpasswd auth on loopback) and the real Docker
engine; the role runs through ansible-playbook as the images play of site.yml runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Registry

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)

PLAYBOOK = """\
- name: Images role against a test registry
  hosts: all
  gather_facts: false
  tasks:
    - name: Check and publish the project-wide settings.
      ansible.builtin.import_role:
        name: jobstack.deploy._common
        tasks_from: preflight
    - name: Build, push and reference the images.
      ansible.builtin.import_role:
        name: jobstack.deploy.images
  post_tasks:
    - name: Write the facts the deploy roles would use.
      ansible.builtin.copy:
        dest: "{{ facts_file }}"
        content: >-
          {{ {'tag': images_tag, 'engine': images_engine_ref,
              'user_interface': images_user_interface_ref} | to_json }}
        mode: "0600"
      check_mode: false
"""


def run_images_role(tmp_path: Path, extra_vars: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """ansible-playbook with the images role on the control node; HOME is private (docker login)."""
    playbook = tmp_path / "images.yml"
    playbook.write_text(PLAYBOOK)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    # The checkout is the collection jobstack.deploy (collections/ links back to it).
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "collections")
    env["ANSIBLE_LOCAL_TEMP"] = str(home / ".ansible/tmp")
    variables: dict[str, object] = {
        "facts_file": str(tmp_path / "facts.json"),
        "ansible_python_interpreter": sys.executable,
    }
    variables.update(extra_vars)
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            json.dumps(variables),
            str(playbook),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def recap_changed(output: str) -> int:
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", output)
    assert match, f"no play recap in:\n{output[-3000:]}"
    return int(match.group(1))


def _remove_local_images(tag: str) -> None:
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=False
    ).stdout.split()
    images = [image for image in listing if image.endswith(f":{tag}")]
    if images:
        subprocess.run(["docker", "rmi", *images], capture_output=True, check=False)


@pytest.fixture(scope="module")
def tag() -> Iterator[str]:
    """A tag of this module's own; its local images are removed afterwards."""
    value = f"pushtest-{uuid.uuid4().hex[:8]}"
    yield value
    _remove_local_images(value)


def staging_vars(registry: Registry, python_base: str, tag: str) -> dict[str, object]:
    return {
        "jobstack_environment": "staging",
        "jobstack_target": "kubernetes",
        "jobstack_kube_context": "staging-test",
        "images_registry": f"{registry.address}/jobstack",
        "images_registry_username": registry.username,
        "images_registry_password": registry.password,
        "images_tag": tag,
        "images_python_base": python_base,
        "images_build_network": "host",
    }


@pytest.fixture(scope="module")
def first_push(
    tmp_path_factory: pytest.TempPathFactory, registry: Registry, python_base: str, tag: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The images role run once for staging: builds and pushes both images."""
    workdir = tmp_path_factory.mktemp("images-staging")
    return workdir, run_images_role(workdir, staging_vars(registry, python_base, tag))


def test_staging_pushes_both_images_and_deploys_them_by_digest(
    first_push: tuple[Path, subprocess.CompletedProcess[str]], registry: Registry, tag: str
) -> None:
    workdir, first = first_push
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap_changed(first.stdout) > 0
    assert registry.password not in first.stdout + first.stderr

    facts = json.loads((workdir / "facts.json").read_text())
    assert facts["tag"] == tag
    for key, name in (("engine", "jobstack-engine"), ("user_interface", "jobstack-user-interface")):
        ref = facts[key]
        assert re.fullmatch(rf"{re.escape(registry.address)}/jobstack/{name}@sha256:[0-9a-f]{{64}}", ref), ref
        # The registry serves that tag, and its digest is the one the deploy roles will use.
        with registry.get(f"jobstack/{name}/manifests/{tag}", accept=MANIFEST_TYPES) as response:
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == ref.split("@", 1)[1]


def test_second_run_builds_and_pushes_nothing(
    first_push: tuple[Path, subprocess.CompletedProcess[str]], registry: Registry, python_base: str, tag: str
) -> None:
    workdir, first = first_push
    assert first.returncode == 0, first.stdout[-4000:]
    refs_after_push = json.loads((workdir / "facts.json").read_text())
    second = run_images_role(workdir, staging_vars(registry, python_base, tag))
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap_changed(second.stdout) == 0, second.stdout[-4000:]
    assert json.loads((workdir / "facts.json").read_text()) == refs_after_push


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"images_registry": ""}, "images_registry"),
        ({"images_tag": "latest"}, "images_tag"),
        ({"images_tag": "abc123-dirty-0badc0de"}, "images_tag"),
        ({"images_tag": "not a tag"}, "images_tag"),
    ],
)
def test_staging_refuses_bad_image_settings_with_a_message_naming_the_variable(
    tmp_path: Path, registry: Registry, python_base: str, override: dict[str, str], named: str
) -> None:
    tag = "refused-" + uuid.uuid4().hex[:8]
    result = run_images_role(tmp_path, {**staging_vars(registry, python_base, tag), **override})
    assert result.returncode != 0
    assert named in result.stdout
    assert "changed=0" in result.stdout


def test_staging_refuses_a_missing_image_tag_when_git_cannot_give_one(
    tmp_path: Path, registry: Registry, python_base: str
) -> None:
    # A build context outside any git checkout and no images_tag: there is nothing to tag with.
    context = tmp_path / "services"
    shutil.copytree(REPO / "services", context, ignore=shutil.ignore_patterns("__pycache__"))
    variables = {**staging_vars(registry, python_base, ""), "images_context_dir": str(context)}
    result = run_images_role(tmp_path, variables)
    assert result.returncode != 0
    assert "images_tag is empty and no git commit contains" in result.stdout
    assert "changed=0" in result.stdout


def test_staging_refuses_to_build_an_older_commit_tag_from_this_checkout(
    tmp_path: Path, registry: Registry, python_base: str
) -> None:
    # A rollback with -e images_tag=<old commit> must not build today's code under yesterday's tag.
    result = run_images_role(tmp_path, staging_vars(registry, python_base, "0123456789ab"))
    assert result.returncode != 0
    assert "images_tag 0123456789ab names a commit, but services/ here is at" in result.stdout
    assert "changed=0" in result.stdout
