"""The images role for staging/production: build, push to a registry, deploy by digest.

A real registry (Debian's docker-registry with htpasswd auth on loopback) and the real Docker
engine; the role runs through ansible-playbook as the images play of site.yml runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import MANIFEST_TYPES, REPO, Registry, recap_changed, run_images_role, staging_vars


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
