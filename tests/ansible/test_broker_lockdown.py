"""The broker is locked down in every Kubernetes environment, as rendered: a NetworkPolicy that admits exactly
the listed peers on exactly their ports, AMQP over TLS with a cert-manager certificate the clients verify,
one non-administrator user per client with exactly the permissions it needs, nothing that uses the
operator's administrator default user; and the smaller rules (pinned image, Pod Security Admission labels,
a region label on every object, no double scrapes, no client affinity)."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLUSTERS, KUBERNETES_INVENTORIES

REGIONS = {
    "minikube-jobstack": "local",
    "staging-eu-west-1": "eu-west-1",
    "prod-eu-west-1": "eu-west-1",
    "prod-us-east-1": "us-east-1",
}
SERVICE_APPS = ["engine", "user-interface"]


def objects(directory: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))]


def first_cluster(renders: dict, inventory: str) -> Path:
    root, run = renders[inventory]
    assert run.returncode == 0, run.output[-3000:]
    return root / inventory / CLUSTERS[inventory][0]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def peers_and_ports(policy: dict[str, Any]) -> set[tuple[str, tuple[int | str, ...]]]:
    """Each ingress rule as (who, ports): who is a compact, comparable description of its peers."""
    rules = set()
    for rule in policy["spec"]["ingress"]:
        who = json.dumps(rule["from"], sort_keys=True)
        ports = tuple(
            f"{port['port']}-{port['endPort']}" if "endPort" in port else port["port"] for port in rule["ports"]
        )
        assert all(port["protocol"] == "TCP" for port in rule["ports"])
        rules.add((who, ports))
    return rules


def peer(kind: str, labels: dict[str, str] | None = None, expression: list[str] | None = None) -> str:
    if expression is not None:
        selector = {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": expression}]}
        return json.dumps([{"podSelector": selector}], sort_keys=True)
    return json.dumps([{kind: {"matchLabels": labels}}], sort_keys=True)


BROKER_PODS = {"app.kubernetes.io/name": "jobstack", "app.kubernetes.io/component": "rabbitmq"}


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_the_broker_network_policy_admits_exactly_the_listed_peers_and_ports(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    policy = one(docs, "NetworkPolicy", "jobstack-rabbitmq")
    assert policy["spec"]["podSelector"] == {"matchLabels": BROKER_PODS}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    expected = {
        (peer("podSelector", expression=SERVICE_APPS), (5671,)),
        (peer("namespaceSelector", {"kubernetes.io/metadata.name": "rabbitmq-system"}), (15672, 15671)),
        (peer("podSelector", BROKER_PODS), (4369, 25672, "35672-35682")),
    }
    if inventory != "dev":  # dev has no Prometheus and no KEDA
        expected.add((peer("namespaceSelector", {"kubernetes.io/metadata.name": "monitoring"}), (15692,)))
        expected.add((peer("namespaceSelector", {"kubernetes.io/metadata.name": "keda"}), (5671,)))
    assert peers_and_ports(policy) == expected
    # No peer at all may use plain AMQP.
    assert not any(5672 in ports for _, ports in peers_and_ports(policy))


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_the_broker_policy_exists_before_any_broker_pod(renders, inventory):
    names = sorted(path.name for path in first_cluster(renders, inventory).glob("*.yaml"))
    assert names.index("33-rabbitmq_cluster-01-networkpolicy-jobstack-rabbitmq.yaml") < names.index(
        "34-rabbitmq_cluster-01-rabbitmqcluster-jobstack.yaml"
    )


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_amqp_runs_over_tls_with_a_certificate_from_a_namespace_ca(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    broker = one(docs, "RabbitmqCluster", "jobstack")
    assert broker["spec"]["tls"] == {"secretName": "jobstack-tls"}
    certificate = one(docs, "Certificate", "jobstack-tls")["spec"]
    assert certificate["secretName"] == "jobstack-tls"
    # The name the services and KEDA connect to, and verify.
    assert "jobstack.jobstack.svc" in certificate["dnsNames"]
    assert certificate["issuerRef"] == {"kind": "Issuer", "name": "jobstack-ca"}
    # The chain: self-signed Issuer -> CA Certificate -> CA Issuer.
    assert one(docs, "Issuer", "jobstack-selfsigned")["spec"] == {"selfSigned": {}}
    ca = one(docs, "Certificate", "jobstack-ca")["spec"]
    assert ca["isCA"] is True and ca["issuerRef"] == {"kind": "Issuer", "name": "jobstack-selfsigned"}
    assert one(docs, "Issuer", "jobstack-ca")["spec"] == {"ca": {"secretName": "jobstack-ca"}}


def test_an_inventory_may_name_its_own_issuer_instead_of_the_namespace_ca(run_playbook, tmp_path):
    issuer = {"rabbitmq_cluster_tls_issuer": {"kind": "ClusterIssuer", "name": "corporate-ca"}}
    run = run_playbook("site.yml", "staging", "-e", json.dumps(issuer), render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    docs = objects(tmp_path / "staging" / "staging-eu-west-1")
    assert one(docs, "Certificate", "jobstack-tls")["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "corporate-ca",
    }
    assert not [doc for doc in docs if doc["kind"] == "Issuer" or doc["metadata"]["name"] == "jobstack-ca"]


def service_config(docs: list[dict[str, Any]], app: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read_string(one(docs, "ConfigMap", f"{app}-config")["data"]["config.ini"])
    return parser[parser.sections()[0]]


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_the_services_connect_with_amqps_verify_the_broker_and_use_their_own_user(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    for app in SERVICE_APPS:
        config = service_config(docs, app)
        assert (config["host"], config["port"], config["tls"]) == ("jobstack.jobstack.svc", "5671", "true")
        assert (config["vhost"], config["tls_ca_file"]) == ("jobstack", "/etc/jobstack/tls/ca.crt")
        pod = one(docs, "Deployment", app)["spec"]["template"]["spec"]
        env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
        assert {env["AMQP_USERNAME_FILE"], env["AMQP_PASSWORD_FILE"]} == {
            f"/etc/jobstack/broker/{key}" for key in ("username", "password")
        }
        assert "AMQP_URL_FILE" not in env and "AMQP_URL" not in env
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert volumes["broker-credentials"]["secret"]["secretName"] == f"jobstack-{app}-user-credentials"
        assert [item["key"] for item in volumes["broker-credentials"]["secret"]["items"]] == ["username", "password"]
        # Only the CA of the broker's Secret reaches the pod, never the broker's private key.
        assert volumes["broker-ca"]["secret"] == {
            "secretName": "jobstack-tls",
            "defaultMode": 292,
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }
        mounts = {mount["name"]: mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]}
        assert mounts["broker-ca"] == "/etc/jobstack/tls"


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_nothing_uses_the_operators_administrator_default_user(renders, inventory):
    for path in first_cluster(renders, inventory).glob("*.yaml"):
        assert "default-user" not in path.read_text(), path.name


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_every_client_user_is_no_administrator(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    users = {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "User"}
    expected = {"jobstack-engine", "jobstack-user-interface"} | ({"jobstack-keda"} if inventory != "dev" else set())
    assert set(users) == expected
    for spec in users.values():
        assert spec["tags"] == []
        assert "importCredentialsSecret" not in spec  # the operator generates the credentials


# What each client does (services/jobstack/topology.py, engine.py, user_interface.py; KEDA's passive declare).
PERMISSIONS = {
    "jobstack-engine": {
        "configure": {"job-exchange", "jobstack.jobs", "jobstack.results", "jobstack.dlx", "jobstack.jobs.dead"},
        "write": {"job-exchange", "jobstack.dlx", "jobstack.jobs", "jobstack.results", "jobstack.jobs.dead"},
        "read": {"job-exchange", "jobstack.dlx", "jobstack.jobs"},
    },
    "jobstack-user-interface": {
        "configure": {"job-exchange", "jobstack.jobs", "jobstack.results"},
        "write": {"job-exchange", "amq.default", "jobstack.jobs", "jobstack.results"},
        "read": {"job-exchange", "jobstack.results"},
    },
    "jobstack-keda": {"configure": {"jobstack.jobs"}, "write": set(), "read": set()},
}
# Names a client must never match: everything else in the vhost, and near misses of the anchored names.
# (The default exchange, whose name is "", is checked as amq.default.)
OTHER_NAMES = [
    "amq.topic",
    "jobstack.jobsX",
    "xjobstack.jobs",
    "jobstack.replies.x",
    "jobstackXjobs",
    "job-exchange2",
]


@pytest.mark.parametrize("inventory", ["staging"])
def test_each_permission_grants_exactly_what_its_client_does(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    permissions = {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "Permission"}
    assert set(permissions) == set(PERMISSIONS)
    for user, spec in permissions.items():
        assert spec["vhost"] == "jobstack" and spec["userReference"] == {"name": user}
        every = set().union(*PERMISSIONS[user].values(), *(names for p in PERMISSIONS.values() for names in p.values()))
        for access, allowed in PERMISSIONS[user].items():
            pattern = re.compile(spec["permissions"][access])
            matched = {name for name in [*every, *OTHER_NAMES] if pattern.search(name)}
            assert matched == allowed, f"{user} {access}: {spec['permissions'][access]} matches {matched}"


@pytest.mark.parametrize("inventory", ["staging", "production"])
def test_keda_authenticates_with_its_own_user_over_amqps(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    auth = one(docs, "TriggerAuthentication", "engine-rabbitmq")["spec"]
    secrets = {item["parameter"]: (item["name"], item["key"]) for item in auth["secretTargetRef"]}
    assert secrets == {
        "username": ("jobstack-keda-user-credentials", "username"),
        "password": ("jobstack-keda-user-credentials", "password"),
        "ca": ("jobstack-tls", "ca.crt"),
    }
    assert auth["configMapTargetRef"] == [{"parameter": "tls", "name": "engine-keda", "key": "tls"}]
    assert one(docs, "ConfigMap", "engine-keda")["data"] == {"tls": "enable"}
    trigger = one(docs, "ScaledObject", "engine")["spec"]["triggers"][0]["metadata"]
    assert trigger["host"] == "amqps://jobstack.jobstack.svc:5671/jobstack" and "@" not in trigger["host"]
    assert (trigger["protocol"], trigger["vhostName"], trigger["queueName"]) == ("amqp", "jobstack", "jobstack.jobs")


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_rabbitmq_is_pinned_and_reconciles_quorum_membership_to_its_node_count(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    spec = one(docs, "RabbitmqCluster", "jobstack")["spec"]
    assert spec["image"] == "rabbitmq:4.2.6-management"
    config = spec["rabbitmq"]["additionalConfig"].splitlines()
    assert "quorum_queue.continuous_membership_reconciliation.enabled = true" in config
    assert f"quorum_queue.continuous_membership_reconciliation.target_group_size = {spec['replicas']}" in config


def test_the_topology_operator_stays_on_the_management_listener_the_policy_opens(renders):
    docs = objects(first_cluster(renders, "production"))
    annotations = one(docs, "RabbitmqCluster", "jobstack")["metadata"]["annotations"]
    assert annotations["rabbitmq.com/operator-connection-uri"] == "http://jobstack.jobstack.svc:15672"


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_the_namespace_enforces_the_restricted_pod_security_standard(renders, inventory):
    labels = one(objects(first_cluster(renders, inventory)), "Namespace", "jobstack")["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert re.fullmatch(r"v1\.\d+", labels[f"pod-security.kubernetes.io/{mode}-version"])


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_every_object_carries_its_region(renders, inventory):
    root, _ = renders[inventory]
    for cluster in CLUSTERS[inventory]:
        region = json.loads((root / inventory / cluster / "render-info.json").read_text())["region"]
        for doc in objects(root / inventory / cluster):
            assert doc["metadata"]["labels"]["region"] == region, f"{doc['kind']}/{doc['metadata']['name']}"
        broker = one(objects(root / inventory / cluster), "RabbitmqCluster", "jobstack")["spec"]
        assert broker["override"]["statefulSet"]["spec"]["template"]["metadata"]["labels"] == {"region": region}
        assert region == REGIONS[cluster]


def prometheus_annotated(doc: dict[str, Any]) -> bool:
    annotations = [doc["metadata"].get("annotations") or {}]
    if doc["kind"] == "Deployment":
        annotations.append(doc["spec"]["template"]["metadata"].get("annotations") or {})
    return any(key.startswith("prometheus.io/") for found in annotations for key in found)


def test_without_the_prometheus_operator_only_the_pods_are_annotated_for_scraping(renders):
    docs = objects(first_cluster(renders, "dev"))
    annotated = sorted(f"{doc['kind']}/{doc['metadata']['name']}" for doc in docs if prometheus_annotated(doc))
    assert annotated == ["Deployment/engine", "Deployment/user-interface"]
    for doc in docs:
        if doc["kind"] == "Deployment":
            assert not any(key.startswith("prometheus.io/") for key in doc["metadata"].get("annotations") or {})
    assert not [doc for doc in docs if doc["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]


@pytest.mark.parametrize("inventory", ["staging", "production"])
def test_where_monitors_scrape_no_object_carries_prometheus_annotations(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "ServiceMonitor"]
    assert not [doc["metadata"]["name"] for doc in docs if prometheus_annotated(doc)]


@pytest.mark.parametrize("inventory", KUBERNETES_INVENTORIES)
def test_no_client_affinity_any_user_interface_replica_answers(renders, inventory):
    docs = objects(first_cluster(renders, inventory))
    assert "sessionAffinity" not in one(docs, "Service", "user-interface")["spec"]
    for doc in docs:
        if doc["kind"] == "Ingress":
            assert not any("upstream-hash-by" in key for key in doc["metadata"].get("annotations") or {})


@pytest.mark.parametrize(
    ("inventory", "resolvers"),
    [
        ("dev", [{"namespace": "kube-system", "pods": {"k8s-app": "kube-dns"}}, "169.254.20.10/32"]),
        (
            "production",
            [{"namespace": "kube-system", "pods": {"k8s-app": "kube-dns"}}, "169.254.20.10/32", "169.254.169.254/32"],
        ),
    ],
)
def test_dns_egress_reaches_kube_dns_nodelocal_dnscache_and_cloud_resolvers(renders, inventory, resolvers):
    docs = objects(first_cluster(renders, inventory))
    for app in SERVICE_APPS:
        egress = one(docs, "NetworkPolicy", app)["spec"]["egress"]
        dns = [rule for rule in egress if {"protocol": "UDP", "port": 53} in rule["ports"]]
        assert len(dns) == 1 and {"protocol": "TCP", "port": 53} in dns[0]["ports"]
        found = []
        for target in dns[0]["to"]:
            if "ipBlock" in target:
                found.append(target["ipBlock"]["cidr"])
            else:
                found.append(
                    {
                        "namespace": target["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                        "pods": target["podSelector"]["matchLabels"],
                    }
                )
        assert found == resolvers
        broker = [rule for rule in egress if rule not in dns]
        assert broker == [
            {"to": [{"podSelector": {"matchLabels": BROKER_PODS}}], "ports": [{"protocol": "TCP", "port": 5671}]}
        ]
