"""The live preflight: what each role publishes that the cluster must provide (from the inventory's
settings), what the decision logic makes of a cluster that lacks it, and that render mode asks no cluster.
The cluster side (kubernetes.core.k8s_info) needs a cluster: see molecule/minikube."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import yaml
from conftest import BIN, CLUSTERS, REPO_ROOT, ansible_playbook, json_results

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import cluster


def published_needs(run_playbook, inventory: str, tmp_path, *args: str) -> dict[str, Any]:
    """{needs, releases} that the preflight play of site.yml publishes for the first cluster of the inventory."""
    run = run_playbook(
        "site.yml",
        inventory,
        "--tags",
        "preflight",
        *args,
        render_root=tmp_path,
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert run.returncode == 0, run.output[-3000:]
    parts = []
    for item in json_results(run.output):
        if item["host"] == CLUSTERS[inventory][0]:
            facts = item["result"].get("ansible_facts") or {}
            parts += [value for key, value in facts.items() if key.startswith("jobstack_platform_needs_")]
    assert parts, run.output[-3000:]
    return cluster.platform_merge(parts)


def kinds(platform: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (need["kind"], need.get("name") or ",".join(f"{k}={v}" for k, v in (need.get("labels") or {}).items()))
        for need in platform["needs"]
    }


def test_staging_needs_keda_its_ingress_issuer_storage_prometheus_and_the_namespaces_it_admits(run_playbook, tmp_path):
    platform = published_needs(run_playbook, "staging", tmp_path)
    assert {
        ("crd", "scaledobjects.keda.sh"),
        ("crd", "triggerauthentications.keda.sh"),
        ("crd", "servicemonitors.monitoring.coreos.com"),
        ("crd", "prometheusrules.monitoring.coreos.com"),
        ("ingress_class", "nginx"),
        ("cluster_issuer", "letsencrypt"),
        ("storage_class", "standard-rwo"),
        ("namespace", "kubernetes.io/metadata.name=ingress-nginx"),
        ("namespace", "kubernetes.io/metadata.name=monitoring"),
        ("namespace", "kubernetes.io/metadata.name=keda"),
        ("namespace", "kubernetes.io/metadata.name=kube-system"),
        ("namespace", "kubernetes.io/metadata.name=rabbitmq-system"),
        ("crd", "rabbitmqclusters.rabbitmq.com"),
        ("crd", "queues.rabbitmq.com"),
        ("crd", "certificates.cert-manager.io"),
    } <= kinds(platform)
    assert {release["name"] for release in platform["releases"]} == {
        "cert-manager",
        "rabbitmq-cluster-operator",
        "messaging-topology-operator",
    }


def test_dev_needs_no_keda_no_issuer_and_no_prometheus(run_playbook, tmp_path):
    names = {name for _, name in kinds(published_needs(run_playbook, "dev", tmp_path))}
    assert not [name for name in names if "keda" in name or "monitoring" in name or name == "letsencrypt"]
    assert {"standard", "nginx", "kubernetes.io/metadata.name=ingress-nginx"} <= names


def test_an_empty_cluster_fails_the_live_preflight_with_one_line_per_missing_piece(run_playbook, tmp_path):
    platform = published_needs(run_playbook, "staging", tmp_path)
    empty = {
        "crds": [],
        "deployments": {},
        "storage_classes": [],
        "ingress_classes": [],
        "cluster_issuers": None,
        "namespaces": [],
    }
    problems = cluster.platform_problems(platform, empty, "staging-eu-west-1")
    assert "cluster staging-eu-west-1: CustomResourceDefinition scaledobjects.keda.sh is missing" in "\n".join(problems)
    assert any(line.startswith("cluster staging-eu-west-1: StorageClass standard-rwo is missing") for line in problems)
    assert any(line.startswith("cluster staging-eu-west-1: IngressClass nginx is missing") for line in problems)
    assert any("ClusterIssuer letsencrypt is missing" in line for line in problems)
    # cert-manager and the operators are absent, so jobstack installs them: neither their CRDs nor the
    # operators' namespace are asked of the cluster.
    assert not [line for line in problems if "rabbitmq.com" in line or "cert-manager.io" in line]
    assert not [line for line in problems if "rabbitmq-system" in line]
    assert len(problems) == len(set(problems))


def test_a_cluster_with_the_platform_releases_needs_their_crds_and_namespace(run_playbook, tmp_path):
    platform = published_needs(run_playbook, "production", tmp_path, "-e", "rabbitmq_operator_install=never")
    observed = {"crds": [], "deployments": {}, "namespaces": [], "storage_classes": [], "ingress_classes": []}
    problems = "\n".join(cluster.platform_problems(platform, observed, "prod-eu-west-1"))
    assert "CustomResourceDefinition rabbitmqclusters.rabbitmq.com is missing" in problems
    assert "CustomResourceDefinition permissions.rabbitmq.com is missing" in problems
    assert "no namespace is labelled kubernetes.io/metadata.name=rabbitmq-system" in problems


def test_the_live_preflight_runs_after_minikube_starts_and_before_the_images_and_any_region():
    plays = [play["name"] for play in yaml.safe_load((REPO_ROOT / "playbooks" / "site.yml").read_text())]
    assert [name.split(" - ")[0] for name in plays] == ["Preflight", "Cluster", "Platform", "Images", "Rollout"]
    platform = yaml.safe_load((REPO_ROOT / "playbooks" / "site.yml").read_text())[2]
    assert platform["any_errors_fatal"] is True and "serial" not in platform
    task = platform["tasks"][0]
    assert task["ansible.builtin.include_role"]["tasks_from"] == "platform"
    assert "not jobstack_render_only" in task["when"]


def test_render_mode_asks_no_cluster(renders):
    _, run = renders["production"]
    assert run.returncode == 0
    assert "Read the CustomResourceDefinitions" not in run.output


@pytest.mark.parametrize(
    ("inventory", "extra", "message"),
    [
        (
            "staging",
            [],
            "No sha256 of release messaging-topology-operator-v1.20.1 in",
        ),
        ("dev", ["-e", "rabbitmq_cluster_storage_size=1Gi"], "rabbitmq_cluster_storage_size (1Gi) must be larger"),
        (
            "production",
            ["-e", '{"rabbitmq_cluster_resources": {"requests": {"cpu": "1"}}}'],
            "rabbitmq_cluster_resources.requests.cpu is 1 but must be at least 2 in production",
        ),
        ("dev", ["-e", "rabbitmq_cluster_image=rabbitmq"], "rabbitmq_cluster_image must name a version"),
        ("dev", ["-e", '{"jobstack_dns_egress": [{"cidr": "10.0.0.10"}]}'], "jobstack_dns_egress[0] must be"),
    ],
)
def test_static_preflight_refusals_before_any_cluster_is_asked(run_playbook, tmp_path, inventory, extra, message):
    # Not in render mode (a deploy): the static preflight stops before the live one contacts a cluster. Every
    # release is locked here (a made-up sha256 for the Topology Operator), except in the first case.
    lock = yaml.safe_load((REPO_ROOT / "inventories" / "releases.lock.yml").read_text())
    if "sha256" not in message:
        lock["releases"]["messaging-topology-operator-v1.20.1"] = {"sha256": "0" * 64, "url": "https://example.test/m"}
    lock_file = tmp_path / "releases.lock.yml"
    lock_file.write_text("---\n" + yaml.safe_dump(lock))
    # Production deploys only promoted digests: a promoted file, so that its own check passes.
    promoted = tmp_path / "promoted-images.yml"
    promoted.write_text(f"---\nengine: sha256:{'1' * 64}\nuser_interface: sha256:{'2' * 64}\n")
    promoted_args = ["-e", f"images_promoted_file={promoted}"] if inventory == "production" else []
    run = run_playbook(
        "site.yml",
        inventory,
        "-e",
        f"images_tag=0123456789ab jobstack_render_root={tmp_path / 'rendered'} jobstack_release_lock_file={lock_file}",
        *promoted_args,
        *extra,
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert run.returncode != 0
    failures = [item for item in json_results(run.output) if item["result"].get("failed")]
    assert failures and message in failures[0]["result"]["msg"], failures
    assert not any("Read the CustomResourceDefinitions" in item["task"] for item in json_results(run.output))


DECIDE = "{{ __common_platform | jobstack.deploy.platform_problems(__common_platform_observed, inventory_hostname) }}"


def test_the_live_preflight_turns_what_k8s_info_returns_into_one_line_per_missing_piece(ansible_env, tmp_path):
    """The plumbing of roles/_common/tasks/platform.yml: its registered k8s_info results (as the module returns
    them) through the role's own expressions (vars/main.yml) to the decision; the k8s_info calls themselves
    need a cluster."""
    registered = {
        "__common_platform_crds": {"results": [{"resources": []}, {"resources": []}]},
        "__common_platform_deployments": {
            "results": [{"item": {"name": name}, "resources": []} for name in ("cert-manager",)]
        },
        "__common_platform_lists": {
            "results": [
                {
                    "resources": [
                        {"metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "kube-system"}}}
                    ]
                },
                {"resources": [{"metadata": {"name": "fast"}}]},
                {"resources": []},
            ]
        },
        "__common_platform_issuers": {"api_found": False, "resources": []},
    }
    play = {
        "name": "The live preflight's plumbing",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "jobstack_environment": "test",
            "jobstack_kube_context": "test",
            "jobstack_render_root": str(tmp_path / "rendered"),
            "ansible_python_interpreter": str(BIN / "python"),
        },
        "tasks": [
            {
                "name": "Publish the project-wide settings.",
                "ansible.builtin.import_role": {"name": "jobstack.deploy._common", "tasks_from": "preflight"},
            },
            {
                "name": "Publish what cert-manager needs.",
                "ansible.builtin.import_role": {"name": "jobstack.deploy.cert_manager", "tasks_from": "preflight"},
                "vars": {"cert_manager_install": "never"},
            },
            {"name": "What k8s_info returned.", "ansible.builtin.set_fact": registered},
            {
                "name": "The role's expressions.",
                "ansible.builtin.include_vars": str(REPO_ROOT / "roles" / "_common" / "vars" / "main.yml"),
            },
            {
                "name": "Decide.",
                "ansible.builtin.debug": {"msg": DECIDE},
            },
        ],
    }
    playbook = tmp_path / "plumbing.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    result = ansible_playbook(
        {**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}, str(playbook), "-c", "local"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    problems = next(item for item in json_results(result.stdout) if item["task"] == "Decide.")["result"]["msg"]
    assert problems == [
        "cluster localhost: CustomResourceDefinition certificates.cert-manager.io is missing (the broker's TLS "
        "certificate; cert-manager is not installed by jobstack (cert_manager_install))",
        "cluster localhost: CustomResourceDefinition issuers.cert-manager.io is missing (the broker's certificate "
        "authority; cert-manager is not installed by jobstack (cert_manager_install))",
    ]
