"""plugins/filter/cluster.py and the size filters of jobstack.py: the decisions about a live cluster, fed with
what kubernetes.core.k8s_info returns (shapes as the operators' sources write their status), no cluster needed."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import cluster
import jobstack


def resource(generation: int, conditions: dict[str, Any], observed: int | None = None, per_condition: bool = False):
    """A custom resource as k8s_info returns it: conditions {type: status or (status, message)}."""
    status_conditions = []
    for kind, value in conditions.items():
        state, message = value if isinstance(value, tuple) else (value, "")
        condition = {"type": kind, "status": state, "message": message}
        if per_condition and observed is not None:
            condition["observedGeneration"] = observed
        status_conditions.append(condition)
    status: dict[str, Any] = {"conditions": status_conditions}
    if observed is not None and not per_condition:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


BROKER = ["AllReplicasReady", "ReconcileSuccess"]


def test_a_broker_with_all_replicas_ready_at_its_generation_is_ready():
    broker = resource(3, {"AllReplicasReady": "True", "ReconcileSuccess": "True", "ClusterAvailable": "True"}, 3)
    assert cluster.not_ready_reason([broker], BROKER) == ""


def test_a_broker_ready_at_the_previous_generation_is_not_ready_right_after_an_update():
    # Right after an apply the conditions still describe the old pods: AllReplicasReady stays True.
    broker = resource(4, {"AllReplicasReady": "True", "ReconcileSuccess": "True"}, 3)
    assert cluster.not_ready_reason([broker], BROKER) == (
        "AllReplicasReady describes generation 3, not the current generation 4"
    )


def test_cluster_available_with_one_pod_is_not_all_replicas_ready():
    # ClusterAvailable is True as soon as one endpoint exists (internal/status/cluster_available.go).
    broker = resource(1, {"ClusterAvailable": "True", "AllReplicasReady": ("False", "1/3 Pods ready")}, None)
    assert cluster.not_ready_reason([broker], BROKER) == "AllReplicasReady is False (1/3 Pods ready)"


def test_a_broker_without_conditions_yet_or_missing_is_not_ready():
    assert cluster.not_ready_reason([{"metadata": {"generation": 1}}], BROKER) == "no AllReplicasReady condition yet"
    assert cluster.not_ready_reason([], BROKER) == "not found"


def test_topology_resources_are_ready_only_at_their_generation():
    assert cluster.not_ready_reason([resource(2, {"Ready": "True"}, 2)], ["Ready"]) == ""
    failed = resource(3, {"Ready": ("False", "Error 406 (PRECONDITION_FAILED - inequivalent arg 'durable')")}, 2)
    assert "PRECONDITION_FAILED" in cluster.not_ready_reason([failed], ["Ready"])


def test_cert_manager_reports_the_generation_on_each_condition():
    assert cluster.not_ready_reason([resource(1, {"Ready": "True"}, 1, per_condition=True)], ["Ready"]) == ""
    assert cluster.not_ready_reason([resource(2, {"Ready": "True"}, 1, per_condition=True)], ["Ready"]) != ""


@pytest.mark.parametrize(
    "message",
    [
        'Internal error occurred: failed calling webhook "vrabbitmqcluster.kb.io": failed to call webhook: Post '
        '"https://rabbitmq-cluster-webhook-service.rabbitmq-system.svc:443/validate-rabbitmq-com-v1beta1-rabbitmqcluster'
        '?timeout=10s": tls: failed to verify certificate: x509: certificate signed by unknown authority',
        'Internal error occurred: failed calling webhook "vqueue.kb.io": failed to call webhook: Post '
        '"https://webhook-service.rabbitmq-system.svc:443/validate-rabbitmq-com-v1beta1-queue?timeout=10s": dial tcp '
        "10.96.10.2:443: connect: connection refused",
        'Internal error occurred: failed calling webhook "mrabbitmqcluster.kb.io": failed to call webhook: Post '
        '"https://rabbitmq-cluster-webhook-service.rabbitmq-system.svc:443/mutate": no endpoints available for service '
        '"rabbitmq-cluster-webhook-service"',
    ],
)
def test_a_webhook_that_does_not_serve_yet_is_retried(message):
    assert cluster.webhook_not_serving(f"Failed to create object: b'{message}'")


@pytest.mark.parametrize(
    "message",
    [
        'admission webhook "vrabbitmqcluster.kb.io" denied the request: spec.override.statefulSet.spec.template.spec'
        ".hostNetwork: Forbidden: hostNetwork is not permitted in override",
        'RabbitmqCluster.rabbitmq.com "jobstack" is invalid: spec.replicas: Invalid value: -1',
        "",
        None,
    ],
)
def test_a_refusal_or_another_error_is_not_retried(message):
    assert not cluster.webhook_not_serving(message)


CERT_MANAGER = {
    "name": "cert-manager",
    "crd": "certificates.cert-manager.io",
    "install": "auto",
    "variable": "cert_manager_install",
}


def crd(name: str, *managers: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "managedFields": [{"manager": manager} for manager in managers]}}


def deployment(name: str, namespace: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


@pytest.mark.parametrize(
    ("crds", "deployments", "state"),
    [
        ([], [], "absent"),
        ([crd("certificates.cert-manager.io", "jobstack", "cainjector")], [deployment("cert-manager", "x")], "ours"),
        ([crd("certificates.cert-manager.io", "helm")], [deployment("cert-manager", "platform")], "foreign"),
        ([crd("certificates.cert-manager.io", "helm")], [], "broken"),
        ([], [deployment("cert-manager", "platform")], "broken"),
    ],
)
def test_who_runs_a_release(crds, deployments, state):
    observed = {"crds": crds, "deployments": {"cert-manager": deployments}}
    assert cluster.release_states([CERT_MANAGER], observed) == {"cert-manager": state}


@pytest.mark.parametrize(
    ("install", "state", "applied"),
    [
        ("auto", "absent", True),
        ("auto", "ours", True),
        ("auto", "foreign", False),
        ("auto", "broken", False),
        ("always", "foreign", True),
        ("never", "absent", False),
    ],
)
def test_jobstack_leaves_a_release_of_the_platform_alone(install, state, applied):
    release = {**CERT_MANAGER, "install": install}
    assert cluster.releases_to_install([release], {"cert-manager": state}) == (["cert-manager"] if applied else [])
    # Render mode and a role run on its own know nothing of the cluster: they assume none runs.
    assert cluster.releases_to_install([release], None) == (["cert-manager"] if install != "never" else [])


def full_cluster() -> dict[str, Any]:
    """What a cluster that provides everything returns to the live preflight's k8s_info calls."""
    return {
        "crds": [
            crd("scaledobjects.keda.sh", "helm"),
            crd("certificates.cert-manager.io", "helm"),
            crd("issuers.cert-manager.io", "helm"),
        ],
        "deployments": {"cert-manager": [deployment("cert-manager", "cert-manager")]},
        "storage_classes": [
            {"metadata": {"name": "premium-rwo"}},
            {"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}},
        ],
        "ingress_classes": [{"metadata": {"name": "nginx"}}],
        "cluster_issuers": [
            {"metadata": {"name": "letsencrypt"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        ],
        "namespaces": [namespace("kube-system"), namespace("ingress-nginx"), namespace("monitoring")],
    }


NEEDS = {
    "releases": [CERT_MANAGER],
    "needs": [
        {"kind": "crd", "name": "scaledobjects.keda.sh", "because": "engine_autoscaling is keda"},
        {"kind": "crd", "name": "issuers.cert-manager.io", "release": "cert-manager", "because": "the CA"},
        {"kind": "storage_class", "name": "premium-rwo", "because": "the broker volumes"},
        {"kind": "storage_class", "name": "", "because": "default"},
        {"kind": "ingress_class", "name": "nginx", "because": "the Ingress"},
        {"kind": "cluster_issuer", "name": "letsencrypt", "because": "the Ingress certificate"},
        {"kind": "namespace", "labels": {"kubernetes.io/metadata.name": "monitoring"}, "because": "Prometheus"},
    ],
}


def test_a_cluster_that_provides_everything_has_no_problem():
    assert cluster.platform_problems(NEEDS, full_cluster(), "prod-eu-west-1") == []


@pytest.mark.parametrize(
    ("remove", "problem"),
    [
        ("crds", "CustomResourceDefinition scaledobjects.keda.sh is missing (engine_autoscaling is keda)"),
        ("ingress_classes", "IngressClass nginx is missing (the Ingress)"),
        ("namespaces", "no namespace is labelled kubernetes.io/metadata.name=monitoring (Prometheus)"),
    ],
)
def test_each_missing_piece_is_one_line_naming_it_and_the_cluster(remove, problem):
    observed = {**full_cluster(), remove: []}
    problems = cluster.platform_problems(NEEDS, observed, "prod-eu-west-1")
    assert f"cluster prod-eu-west-1: {problem}" in problems
    assert all(line.startswith("cluster prod-eu-west-1: ") and "\n" not in line for line in problems)


def test_storage_classes_by_name_and_the_default_one():
    observed = {**full_cluster(), "storage_classes": [{"metadata": {"name": "standard"}}]}
    problems = cluster.platform_problems(NEEDS, observed, "c")
    assert "cluster c: StorageClass premium-rwo is missing (the broker volumes)" in problems
    assert any("no default StorageClass" in line for line in problems)


def test_a_cluster_issuer_must_exist_and_be_ready_and_needs_cert_manager():
    not_ready = {"metadata": {"name": "letsencrypt"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert "cluster c: ClusterIssuer letsencrypt is not Ready (the Ingress certificate)" in cluster.platform_problems(
        NEEDS, {**full_cluster(), "cluster_issuers": [not_ready]}, "c"
    )
    # No ClusterIssuer kind at all: k8s_info reports api_found false, the play passes None.
    assert any(
        "ClusterIssuer letsencrypt is missing: the cluster has no ClusterIssuer kind" in line
        for line in cluster.platform_problems(NEEDS, {**full_cluster(), "cluster_issuers": None}, "c")
    )


def test_the_crds_of_a_release_jobstack_installs_are_not_required_beforehand():
    # An empty cluster: cert-manager is absent, so jobstack installs it, and its CRDs need not exist yet.
    observed = {**full_cluster(), "crds": [crd("scaledobjects.keda.sh", "helm")], "deployments": {}}
    assert not [line for line in cluster.platform_problems(NEEDS, observed, "c") if "cert-manager.io" in line]
    # With cert_manager_install never, they must.
    never = {**NEEDS, "releases": [{**CERT_MANAGER, "install": "never"}]}
    assert "cluster c: CustomResourceDefinition issuers.cert-manager.io is missing (the CA)" in (
        cluster.platform_problems(never, observed, "c")
    )


def test_a_half_installed_release_stops_the_deploy_unless_asked_to_install_over_it():
    observed = {**full_cluster(), "deployments": {}}
    problems = cluster.platform_problems(NEEDS, observed, "c")
    assert any(line.startswith("cluster c: cert-manager is half installed") for line in problems), problems
    always = {**NEEDS, "releases": [{**CERT_MANAGER, "install": "always"}]}
    assert not cluster.platform_problems(always, observed, "c")


def test_an_operator_of_the_platform_must_run_where_the_broker_admits_it():
    operator = {"name": "rabbitmq-cluster-operator", "crd": "rabbitmqclusters.rabbitmq.com", "install": "auto"}
    need = {
        "kind": "release_namespace",
        "release": "rabbitmq-cluster-operator",
        "labels": {"kubernetes.io/metadata.name": "rabbitmq-system"},
        "variable": "rabbitmq_cluster_operator_namespace_labels",
    }
    observed = {
        "crds": [crd("rabbitmqclusters.rabbitmq.com", "helm")],
        "deployments": {"rabbitmq-cluster-operator": [deployment("rabbitmq-cluster-operator", "operators")]},
        "namespaces": [namespace("operators"), namespace("rabbitmq-system")],
    }
    problems = cluster.platform_problems({"releases": [operator], "needs": [need]}, observed, "c")
    assert problems == [
        "cluster c: rabbitmq-cluster-operator runs in namespace operators, which "
        "rabbitmq_cluster_operator_namespace_labels (kubernetes.io/metadata.name=rabbitmq-system) does not select"
    ]
    moved = {**observed, "deployments": {"rabbitmq-cluster-operator": [deployment("op", "rabbitmq-system")]}}
    assert cluster.platform_problems({"releases": [operator], "needs": [need]}, moved, "c") == []


def test_needs_of_every_role_merge_into_one():
    merged = cluster.platform_merge([{"needs": [{"kind": "crd"}], "releases": []}, {"releases": [CERT_MANAGER]}])
    assert merged == {"needs": [{"kind": "crd"}], "releases": [CERT_MANAGER]}


def test_the_release_lock_file_is_read_or_refused_with_its_name():
    text = "---\nreleases:\n  cert-manager-v1.21.1:\n    sha256: abc\n    url: https://x\n"
    assert cluster.release_lock(text, "lock.yml") == {"cert-manager-v1.21.1": {"sha256": "abc", "url": "https://x"}}
    assert cluster.release_lock("", "lock.yml") == {}
    assert cluster.release_lock_error("releases: [a", "lock.yml").startswith("lock.yml is not valid YAML")
    assert "lock.yml has no 'releases:' map" in cluster.release_lock_error("other: 1\n", "lock.yml")


@pytest.mark.parametrize(
    ("entries", "errors"),
    [
        ([{"cidr": "169.254.20.10/32"}, {"namespace_labels": {"a": "b"}, "pod_labels": {"k8s-app": "kube-dns"}}], 0),
        ([{"cidr": "169.254.20.10"}], 1),
        ([{"namespace_labels": {"a": "b"}}], 1),
        ([{"cidr": "10.0.0.0/8", "pod_labels": {"a": "b"}}], 1),
        ([], 1),
    ],
)
def test_dns_egress_entries_are_address_blocks_or_pods(entries, errors):
    assert len(cluster.dns_egress_errors(entries)) == errors


@pytest.mark.parametrize(
    ("value", "size"), [("4Gi", 4 * 1024**3), ("1G", 10**9), ("1Gi", 1024**3), ("50Gi", 50 * 1024**3), ("1 GB", 0)]
)
def test_storage_quantities_in_bytes(value, size):
    assert jobstack.quantity_bytes(value) == size


@pytest.mark.parametrize(
    ("value", "size"),
    [("2GB", 2 * 10**9), ("2G", 2 * 10**9), ("512MiB", 512 * 1024**2), ("512Mi", 512 * 1024**2), ("1000", 1000)],
)
def test_rabbitmq_sizes_in_bytes_as_rabbitmq_reads_them(value, size):
    assert jobstack.rabbitmq_size_bytes(value) == size


@pytest.mark.parametrize("value", ["", "2 GB", "GB", "2XB", "-1GB", "iB"])
def test_invalid_rabbitmq_sizes(value):
    assert jobstack.rabbitmq_size_bytes(value) == 0


@pytest.mark.parametrize(("value", "millicores"), [("2", 2000), ("0.5", 500), ("250m", 250), (2, 2000), ("x", 0)])
def test_cpu_in_millicores(value, millicores):
    assert jobstack.cpu_millicores(value) == millicores
