"""Promotion, not rebuild: production deploys the digests staging recorded as tested, and a rebuild under a
tag the registry already holds is refused. A real registry (Debian's docker-registry on loopback), the
real Docker engine, the images role and playbooks/promote.yml through ansible-playbook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from .conftest import (
    MANIFEST_TYPES,
    REPO,
    Registry,
    remove_local_images,
    run_images_role,
    staging_vars,
)


def production_vars(registry: Registry, promoted_file: Path) -> dict[str, object]:
    """Production as its inventory sets it up: the same registry (as if staging's digests were copied there)
    and the promoted file; no tag, no build."""
    return {
        "jobstack_environment": "production",
        "jobstack_target": "kubernetes",
        "jobstack_kube_context": "production-test",
        "images_registry": f"{registry.address}/jobstack",
        "images_registry_username": registry.username,
        "images_registry_password": registry.password,
        "images_registry_insecure": True,
        "images_promoted_file": str(promoted_file),
    }


def staging_record(first_push: tuple[Path, subprocess.CompletedProcess[str]], tag: str) -> dict[str, object]:
    """The release record a staging cluster keeps once its gate and smoke test passed (roles/release), here for
    a cluster on the Docker target, whose record is a file in its state directory."""
    workdir, result = first_push
    assert result.returncode == 0, result.stdout[-3000:]
    refs = json.loads((workdir / "facts.json").read_text())
    services = {name: {"image": refs[name], "stage": "40", "objects": []} for name in ("engine", "user_interface")}
    return {
        "release": "0a1b2c3d4e5f",
        "recorded_at": "2030-01-02T03:04:05Z",
        "environment": "staging",
        "cluster": "staging-test",
        "region": "test-1",
        "images_tag": tag,
        "images": {name: refs[name] for name in ("engine", "user_interface")},
        "services": services,
    }


def run_promote(tmp_path: Path, record: dict[str, object], promote_file: Path) -> subprocess.CompletedProcess[str]:
    """playbooks/promote.yml on an inventory of one staging cluster whose release record is `record`."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "release.json").write_text(json.dumps(record))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "clusters": {
                            "hosts": {
                                "staging-test": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": sys.executable,
                                    "jobstack_environment": "staging",
                                    "jobstack_target": "docker",
                                    "docker_broker_credentials_dir": str(state),
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "collections")
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inventory),
            "playbooks/promote.yml",
            "-e",
            f"images_promote_file={promote_file}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def promoted(
    tmp_path_factory: pytest.TempPathFactory, first_push: tuple[Path, subprocess.CompletedProcess[str]], tag: str
) -> tuple[Path, dict[str, object], subprocess.CompletedProcess[str]]:
    """The promotion file written from staging's record: (file, record, run)."""
    workdir = tmp_path_factory.mktemp("promote")
    record = staging_record(first_push, tag)
    promote_file = workdir / "promoted-images.yml"
    return promote_file, record, run_promote(workdir, record, promote_file)


def test_promote_writes_the_digests_staging_recorded_as_tested(
    promoted: tuple[Path, dict[str, object], subprocess.CompletedProcess[str]], tag: str
) -> None:
    promote_file, record, run = promoted
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    written = yaml.safe_load(promote_file.read_text())
    images = record["images"]
    assert isinstance(images, dict)
    assert written["engine"] == images["engine"].split("@")[1]
    assert written["user_interface"] == images["user_interface"].split("@")[1]
    assert written["tag"] == tag
    assert written["release"] == record["release"]
    assert written["tested_in"] == "staging (staging-test, recorded 2030-01-02T03:04:05Z)"


def test_promote_refuses_a_record_without_digests(tmp_path: Path, first_push, tag: str) -> None:
    record = staging_record(first_push, tag)
    record["images"] = {"engine": "jobstack-engine:" + tag, "user_interface": "jobstack-user-interface:" + tag}
    run = run_promote(tmp_path, record, tmp_path / "promoted-images.yml")
    assert run.returncode != 0
    assert "Nothing to promote from staging: every cluster must have passed its gate on the same release" in run.stdout
    assert not (tmp_path / "promoted-images.yml").exists()


def test_production_deploys_the_promoted_digests_and_builds_nothing(
    tmp_path: Path, registry: Registry, promoted: tuple[Path, dict[str, object], subprocess.CompletedProcess[str]]
) -> None:
    promote_file, record, run = promoted
    assert run.returncode == 0, run.stdout[-3000:]
    result = run_images_role(tmp_path, production_vars(registry, promote_file))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # Nothing built, nothing pushed: the only changes are the login (a fresh HOME) and the facts file.
    assert "Build the service images from services/" not in result.stdout
    assert "Push the images the registry does not hold yet" not in result.stdout
    assert "TASK [jobstack.deploy.images : Look up each promoted digest in the registry.]" in result.stdout
    facts = json.loads((tmp_path / "facts.json").read_text())
    images = record["images"]
    assert isinstance(images, dict)
    assert facts["engine"] == images["engine"]
    assert facts["user_interface"] == images["user_interface"]
    assert facts["tag"] == record["images_tag"]


def test_production_refuses_a_promoted_digest_the_registry_does_not_hold(tmp_path: Path, registry: Registry) -> None:
    promote_file = tmp_path / "promoted-images.yml"
    missing = "sha256:" + "0" * 64
    promote_file.write_text(yaml.safe_dump({"tag": "x", "engine": missing, "user_interface": missing}))
    result = run_images_role(tmp_path, production_vars(registry, promote_file))
    assert result.returncode != 0
    assert f"The promoted engine image {registry.address}/jobstack/jobstack-engine@{missing}" in result.stdout
    assert f"is not in {registry.address}/jobstack: copy it there by digest before deploying production" in (
        " ".join(result.stdout.split())
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "does not exist: production deploys only digests an earlier environment tested"),
        (
            {"tag": "x", "engine": "jobstack-engine:latest"},
            "user_interface is missing; engine is not a digest (sha256:<64 hex>)",
        ),
    ],
)
def test_production_refuses_a_missing_or_bad_promoted_file_before_anything(
    tmp_path: Path, registry: Registry, content: dict[str, str] | None, says: str
) -> None:
    promote_file = tmp_path / "promoted-images.yml"
    if content is not None:
        promote_file.write_text(yaml.safe_dump(content))
    result = run_images_role(tmp_path, production_vars(registry, promote_file))
    assert result.returncode != 0
    assert says in " ".join(result.stdout.split())
    assert "changed=0" in result.stdout


def test_a_rebuild_under_a_tag_the_registry_holds_is_refused(
    tmp_path: Path, registry: Registry, python_base: str
) -> None:
    # A tag pushed once, then the same tag built again from other code (as a rebuild of the same commit on
    # another day gives another image): the push must be refused, and the registry keep the first image.
    tag = f"rebuild-{uuid.uuid4().hex[:8]}"
    (tmp_path / "first").mkdir()
    (tmp_path / "again").mkdir()
    try:
        first = run_images_role(tmp_path / "first", staging_vars(registry, python_base, tag))
        assert first.returncode == 0, first.stdout[-4000:]
        pushed = json.loads((tmp_path / "first" / "facts.json").read_text())
        remove_local_images(tag)
        context = tmp_path / "services"
        shutil.copytree(REPO / "services", context, ignore=shutil.ignore_patterns("__pycache__"))
        with (context / "engine" / "engine.py").open("a") as handle:
            handle.write("\n# rebuilt\n")
        again = run_images_role(
            tmp_path / "again", {**staging_vars(registry, python_base, tag), "images_context_dir": str(context)}
        )
        text = " ".join(again.stdout.split())
        assert again.returncode != 0, again.stdout[-3000:]
        assert f"images_tag {tag}: jobstack-engine is already in {registry.address}/jobstack as sha256:" in text
        assert "a rebuild under the same tag is refused" in text
        # The registry still serves the first push under the tag.
        with registry.get(f"jobstack/jobstack-engine/manifests/{tag}", accept=MANIFEST_TYPES) as response:
            assert response.headers["Docker-Content-Digest"] == pushed["engine"].split("@", 1)[1]
    finally:
        remove_local_images(tag)
