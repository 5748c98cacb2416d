"""Fixtures for the Docker tests: a private image registry (Debian's docker-registry) on loopback."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REGISTRY_BINARY = "/usr/bin/docker-registry"


@dataclass
class Registry:
    """A running registry: its address (host:port), one user, and where it logs."""

    address: str
    username: str
    password: str
    log: Path

    def get(self, path: str, accept: str = "") -> HTTPResponse:
        """GET /v2/<path> with the registry's basic auth."""
        request = urllib.request.Request(f"http://{self.address}/v2/{path}")
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if accept:
            request.add_header("Accept", accept)
        response: HTTPResponse = urllib.request.urlopen(request, timeout=10)
        return response


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bcrypt(password: str) -> str:
    """bcrypt hash for the registry's htpasswd file (libxcrypt through the crypt module)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python <= 3.12; Debian's libxcrypt does bcrypt

    # bcrypt is what the registry's htpasswd accepts; ruff's S324 flags every crypt method by name.
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this Python's crypt module cannot make bcrypt hashes for the registry's htpasswd")
    return hashed


def _docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The tests need a Docker daemon (scripts/ensure_dockerd.sh starts one) and are never skipped."""
    if not shutil.which("docker") or not _docker_answers():
        pytest.fail("no Docker daemon answers: run scripts/ensure_dockerd.sh (make test-molecule-docker does)")


@pytest.fixture(scope="session")
def python_base(docker_engine: None) -> str:
    """The offline stand-in python base (cached; seconds when it is up to date)."""
    subprocess.run([str(REPO / "tools/offline_images/build.sh"), "python-base"], check=True)
    return "jobstack/python-base:bookworm"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1:<free port> with htpasswd auth and storage in a temp dir.

    Docker treats 127.0.0.0/8 registries as insecure, so plain HTTP works without daemon settings.
    """
    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.fail(f"{REGISTRY_BINARY} is missing: install Debian's docker-registry (scripts/bootstrap.sh test)")
    base = tmp_path_factory.mktemp("registry")
    username, password = "jobstack", base64.b32encode(os.urandom(15)).decode()
    (base / "htpasswd").write_text(f"{username}:{_bcrypt(password)}\n")
    address = f"127.0.0.1:{_free_port()}"
    (base / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        f"storage: {{filesystem: {{rootdirectory: {base / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{address}'}}\n"
        f"auth: {{htpasswd: {{realm: jobstack-test, path: {base / 'htpasswd'}}}}}\n"
    )
    log = base / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([REGISTRY_BINARY, "serve", str(base / "config.yml")], stdout=out, stderr=out)
    registry = Registry(address, username, password, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            registry.get("")
            break
        except (urllib.error.URLError, ConnectionError) as error:
            if isinstance(error, urllib.error.HTTPError):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"docker-registry did not start on {address}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    yield registry
    process.terminate()
    process.wait(timeout=10)


# -- the images role against the registry (shared by the registry and promotion tests) ---------------

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


def remove_local_images(tag: str) -> None:
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=False
    ).stdout.split()
    images = [image for image in listing if image.endswith(f":{tag}")]
    if images:
        subprocess.run(["docker", "rmi", *images], capture_output=True, check=False)


@pytest.fixture(scope="session")
def tag() -> Iterator[str]:
    """A tag of this session's own; its local images are removed afterwards."""
    value = f"pushtest-{uuid.uuid4().hex[:8]}"
    yield value
    remove_local_images(value)


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
        # docker manifest inspect speaks HTTPS unless told: the test registry is plain HTTP on loopback.
        "images_registry_insecure": True,
    }


@pytest.fixture(scope="session")
def first_push(
    tmp_path_factory: pytest.TempPathFactory, registry: Registry, python_base: str, tag: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The images role run once for staging: builds and pushes both images."""
    workdir = tmp_path_factory.mktemp("images-staging")
    return workdir, run_images_role(workdir, staging_vars(registry, python_base, tag))
