"""playbooks/lock.yml and the release checks of every deploy, offline: the release URLs point at a local HTTP
server on loopback that serves made-up manifests."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO_ROOT, ansible_playbook, json_results

RELEASES = {
    "cert-manager-v1.21.1": "cert-manager.yaml",
    "cluster-operator-v2.22.3": "cluster-operator.yml",
    "messaging-topology-operator-v1.20.1": "messaging-topology-operator-with-certmanager.yaml",
}


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, directory it serves), on 127.0.0.1 only."""
    served = tmp_path / "served"
    served.mkdir()
    for name, filename in RELEASES.items():
        (served / filename).write_text(f"# a made-up release manifest: {name}\napiVersion: v1\nkind: List\nitems: []\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def inventory(tmp_path: Path, release_server: tuple[str, Path]) -> Path:
    """A one-cluster Kubernetes inventory whose releases come from the local server; its lock file and
    download cache are the test's own."""
    base, _ = release_server
    directory = tmp_path / "inventories" / "locked"
    (directory / "group_vars" / "all").mkdir(parents=True)
    (directory / "hosts.yml").write_text(
        "---\nall:\n  children:\n    clusters:\n      children:\n        here:\n          hosts:\n            c1:\n"
    )
    settings = {
        "jobstack_environment": "locked",
        "jobstack_kube_context": "c1",
        "jobstack_cache_dir": str(tmp_path / "cache"),
        "cert_manager_manifest_url": f"{base}/cert-manager.yaml",
        "rabbitmq_operator_manifest_url": f"{base}/cluster-operator.yml",
        "rabbitmq_operator_topology_manifest_url": f"{base}/messaging-topology-operator-with-certmanager.yaml",
    }
    (directory / "group_vars" / "all" / "main.yml").write_text("---\n" + yaml.safe_dump(settings))
    return directory


def lock(ansible_env: dict[str, str], inventory: Path, *args: str):
    return ansible_playbook(ansible_env, "playbooks/lock.yml", "-i", str(inventory), *args)


def lock_file(inventory: Path) -> Path:
    """Beside the inventories, like the repository's inventories/releases.lock.yml."""
    return inventory.parent / "releases.lock.yml"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lock_records_every_release_once_and_a_second_run_changes_nothing(ansible_env, inventory, release_server):
    base, served = release_server
    first = lock(ansible_env, inventory)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    text = lock_file(inventory).read_text()
    assert text.startswith("---\n# The sha256 of every pinned release manifest")
    releases = yaml.safe_load(text)["releases"]
    assert releases == {
        name: {"sha256": sha256(served / filename), "url": f"{base}/{filename}"} for name, filename in RELEASES.items()
    }
    again = lock(ansible_env, inventory)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout
    assert lock_file(inventory).read_text() == text


def test_a_release_that_changed_upstream_is_refused_with_both_checksums(
    ansible_env, inventory, release_server, tmp_path
):
    _, served = release_server
    assert lock(ansible_env, inventory).returncode == 0
    locked = yaml.safe_load(lock_file(inventory).read_text())["releases"]
    topology = served / RELEASES["messaging-topology-operator-v1.20.1"]
    topology.write_text(topology.read_text() + "# changed upstream\n")
    for cached in (tmp_path / "cache").rglob("*.yaml"):
        cached.unlink()  # a new control node: nothing cached
    run = lock({**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}, inventory)
    assert run.returncode != 0
    failed = [item for item in json_results(run.stdout) if item["result"].get("failed")]
    message = failed[0]["result"]["msg"]
    assert message.startswith("Release messaging-topology-operator-v1.20.1: ")
    assert f"has sha256 {sha256(topology)}, but" in message
    assert f"records {locked['messaging-topology-operator-v1.20.1']['sha256']};" in message
    # The lock file was not rewritten with the new checksum.
    assert yaml.safe_load(lock_file(inventory).read_text())["releases"] == locked


def verify_playbook(tmp_path: Path, manifest: dict[str, str]) -> Path:
    """What vendor_manifest does before it applies a release: roles/_common, entry point fetch_release."""
    playbook = tmp_path / "verify.yml"
    play = {
        "name": "Fetch and verify one release as a deploy does",
        "hosts": "clusters",
        "gather_facts": False,
        "connection": "local",
        "vars": {"ansible_python_interpreter": str(BIN / "python")},
        "tasks": [
            {
                "name": "Publish the project-wide settings.",
                "ansible.builtin.import_role": {"name": "jobstack.deploy._common", "tasks_from": "preflight"},
            },
            {
                "name": "Fetch the release and check it against the lock file.",
                "ansible.builtin.import_role": {"name": "jobstack.deploy._common", "tasks_from": "fetch_release"},
                "vars": {"_common_manifest": manifest},
            },
        ],
    }
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return playbook


def test_every_deploy_verifies_the_download_against_the_lock(ansible_env, inventory, release_server, tmp_path):
    base, served = release_server
    assert lock(ansible_env, inventory).returncode == 0
    name, filename = "cert-manager-v1.21.1", RELEASES["cert-manager-v1.21.1"]
    manifest = {
        "stage": "10-cert_manager",
        "name": name,
        "url": f"{base}/{filename}",
        "sha256": "{{ jobstack_release_lock['" + name + "'].sha256 }}",
        "src": "",
    }
    playbook = verify_playbook(tmp_path, manifest)
    env = {**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    assert ansible_playbook(env, str(playbook), "-i", str(inventory)).returncode == 0
    (served / filename).write_text("# someone else's manifest\n")
    for cached in (tmp_path / "cache").rglob("*.yaml"):
        cached.unlink()
    run = ansible_playbook(env, str(playbook), "-i", str(inventory))
    assert run.returncode != 0
    failed = [item for item in json_results(run.stdout) if item["result"].get("failed")]
    message = failed[0]["result"]["msg"]
    locked = yaml.safe_load(lock_file(inventory).read_text())["releases"][name]["sha256"]
    assert message.startswith(f"Release {name}: {base}/{filename} has sha256 {sha256(served / filename)}, but ")
    assert f"records {locked}" in message and "\n" not in message.strip()


def test_a_local_copy_for_air_gapped_clusters_is_verified_too(ansible_env, inventory, release_server, tmp_path):
    _, served = release_server
    assert lock(ansible_env, inventory).returncode == 0
    copy = tmp_path / "copy.yaml"
    copy.write_text("# not the locked release\n")
    name = "cluster-operator-v2.22.3"
    manifest = {
        "stage": "20-rabbitmq_operator",
        "name": name,
        "url": "http://127.0.0.1:9/unused",
        "sha256": "{{ jobstack_release_lock['" + name + "'].sha256 }}",
        "src": str(copy),
    }
    env = {**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    run = ansible_playbook(env, str(verify_playbook(tmp_path, manifest)), "-i", str(inventory))
    assert run.returncode != 0
    message = next(item for item in json_results(run.stdout) if item["result"].get("failed"))["result"]["msg"]
    assert message.startswith(f"Release {name}: {copy} has sha256 {sha256(copy)}, but ")
    copy.write_bytes((served / RELEASES[name]).read_bytes())
    assert ansible_playbook(env, str(verify_playbook(tmp_path, manifest)), "-i", str(inventory)).returncode == 0


def test_the_repository_lock_file_is_what_the_lock_playbook_writes():
    # Same header and shape; the Topology Operator's entry is added by the first lock run with network access.
    text = (REPO_ROOT / "inventories" / "releases.lock.yml").read_text()
    header = yaml.safe_load((REPO_ROOT / "roles" / "_common" / "vars" / "main.yml").read_text())["_common_lock_header"]
    assert text.startswith(header)
    releases = yaml.safe_load(text)["releases"]
    assert {"cert-manager-v1.21.1", "cluster-operator-v2.22.3"} <= set(releases)
    for entry in releases.values():
        assert set(entry) == {"sha256", "url"} and len(entry["sha256"]) == 64
