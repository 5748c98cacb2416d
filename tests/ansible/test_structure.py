"""The layout's promises, checked on the files: few hops from a playbook to a module, the cluster
connection set once, capabilities instead of environment names, collection names everywhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT

PLAYBOOKS = [REPO_ROOT / "playbooks" / "site.yml", REPO_ROOT / "playbooks" / "teardown.yml"]
INCLUDES = (
    "ansible.builtin.import_role",
    "ansible.builtin.include_role",
    "ansible.builtin.import_tasks",
    "ansible.builtin.include_tasks",
)
# What a templated task file name can be.
TEMPLATED = {
    "{{ jobstack_target }}": ["kubernetes", "docker"],
    "{{ jobstack_target }}.yml": ["kubernetes.yml", "docker.yml"],
    "deliver_{{ images_delivery }}.yml": ["deliver_minikube.yml", "deliver_registry.yml"],
}
MAX_HOPS = 4


def included_files(task: dict[str, Any], current: Path) -> list[Path]:
    """The task files a role or tasks include/import leads to."""
    for action in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
        if action in task:
            spec = task[action]
            role = spec["name"].removeprefix("jobstack.deploy.")
            entries = TEMPLATED.get(spec.get("tasks_from", "main"), [spec.get("tasks_from", "main")])
            return [REPO_ROOT / "roles" / role / "tasks" / f"{entry}.yml" for entry in entries]
    for action in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
        if action in task:
            spec = task[action]
            name = spec["file"] if isinstance(spec, dict) else spec
            return [current.parent / entry for entry in TEMPLATED.get(name, [name])]
    return []


def module_calls(
    path: Path, hops: int, trail: list[str], tasks: list[dict[str, Any]] | None = None
) -> list[tuple[int, list[str], str]]:
    """(hops to the module, files on the way, module) for every module call reachable from path (or from the
    given tasks of it)."""
    found: list[tuple[int, list[str], str]] = []
    if tasks is None:
        document = yaml.safe_load(path.read_text()) or []
        tasks = (
            [task for play in document for task in play.get("tasks", [])]
            if path.parent.name == "playbooks"
            else document
        )

    def walk(items: list[dict[str, Any]]) -> None:
        for task in items:
            nested = [task.get(key) or [] for key in ("block", "rescue", "always")]
            if any(nested):
                for block in nested:
                    walk(block)
                continue
            targets = included_files(task, path)
            if targets:
                for target in targets:
                    assert target.is_file(), (
                        f"{path.relative_to(REPO_ROOT)} includes missing {target.relative_to(REPO_ROOT)}"
                    )
                    found.extend(module_calls(target, hops + 1, [*trail, str(target.relative_to(REPO_ROOT))]))
                continue
            module = next(key for key in task if key.count(".") >= 2)
            found.append((hops + 1, trail, module))

    walk(tasks)
    return found


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda path: path.name)
def test_every_module_call_is_at_most_four_hops_from_the_playbook(playbook):
    calls = module_calls(playbook, 0, [str(playbook.relative_to(REPO_ROOT))])
    assert any(module == "kubernetes.core.k8s" for _, _, module in calls)
    too_deep = [(hops, " -> ".join(trail), module) for hops, trail, module in calls if hops > MAX_HOPS]
    assert not too_deep, too_deep
    assert max(hops for hops, _, _ in calls) == MAX_HOPS


def test_the_cluster_connection_is_set_once_in_module_defaults():
    sources = [*REPO_ROOT.glob("playbooks/*.yml"), *REPO_ROOT.glob("roles/*/tasks/*.yml")]
    for path in sources:
        text = path.read_text()
        for line in re.findall(r"^\s*(?:kubeconfig|context):.*$", text, flags=re.MULTILINE):
            assert path.parent.name == "playbooks", f"{path.relative_to(REPO_ROOT)} sets {line.strip()}"
    for playbook in PLAYBOOKS:
        for play in yaml.safe_load(playbook.read_text()):
            modules = {module for _, _, module in module_calls(playbook, 0, [], play.get("tasks", []))}
            if not any(module.startswith("kubernetes.core.") for module in modules):
                continue
            assert play.get("module_defaults", {}).get("group/kubernetes.core.k8s") == {
                "kubeconfig": "{{ jobstack_kubeconfig }}",
                "context": "{{ jobstack_kube_context }}",
            }, play["name"]


def test_no_code_asks_for_an_environment_by_name():
    names = ("local", "dev", "staging", "production")
    pattern = re.compile(r"jobstack_environment\s*(?:==|!=|in\b)|(?:==|!=)\s*'(?:" + "|".join(names) + ")'")
    code = [
        *REPO_ROOT.glob("playbooks/*.yml"),
        *REPO_ROOT.glob("roles/*/*/*.yml"),
        *REPO_ROOT.glob("roles/*/templates/*.j2"),
    ]
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {match.group(0)}"
        for path in code
        for match in pattern.finditer(path.read_text())
    ]
    assert not offenders


def test_roles_are_called_by_their_collection_names():
    code = [
        *REPO_ROOT.glob("playbooks/*.yml"),
        *REPO_ROOT.glob("roles/*/tasks/*.yml"),
        *REPO_ROOT.glob("molecule/*/*.yml"),
    ]
    for path in code:
        for name in re.findall(r"(?:import_role|include_role):\s*\n\s+name:\s*(\S+)", path.read_text()):
            assert name.startswith("jobstack.deploy."), f"{path.relative_to(REPO_ROOT)} calls role {name}"


def test_the_checkout_is_the_collection():
    link = REPO_ROOT / "collections" / "ansible_collections" / "jobstack" / "deploy"
    assert link.is_symlink() and link.resolve() == REPO_ROOT
    assert (REPO_ROOT / "site.yml").resolve() == REPO_ROOT / "playbooks" / "site.yml"
