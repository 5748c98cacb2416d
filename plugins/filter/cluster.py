"""Filters of the jobstack.deploy collection: decisions about a live cluster, kept out of YAML.

Each function takes plain data (what ``kubernetes.core.k8s_info`` returns, or a role's settings) and
returns a decision, so that tests/ansible/test_cluster_filters.py can feed it the lists a cluster
would return, without a cluster:

* ``not_ready_reason``: is a custom resource ready at its current generation (the waits of
  roles/_common/tasks/apply.yml)?
* ``webhook_not_serving``: is an API error an admission webhook that does not answer yet (retried),
  rather than a refusal (not retried)?
* ``release_states`` and ``platform_problems``: the live preflight (roles/_common/tasks/platform.yml).
* ``release_lock`` and ``dns_egress_errors``: checks of the project-wide settings.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# An admission webhook whose server is not reachable yet: the Cluster Operator (since v2.22.0) and
# the Topology Operator register validating/mutating webhooks with failurePolicy Fail, and
# cert-manager's cainjector writes their CA bundle some seconds after the Deployment is ready. The
# API server then answers "failed calling webhook ...: ... x509: certificate signed by unknown
# authority", "... connect: connection refused" or "no endpoints available for service ...". A
# webhook that answers and denies says "admission webhook ... denied the request" instead: that is a
# refusal, and retrying cannot change it.
_WEBHOOK_NOT_SERVING = re.compile(
    r"failed calling webhook|no endpoints available for service|x509: certificate|connect: connection refused",
    re.IGNORECASE,
)
_WEBHOOK_DENIED = re.compile(r"admission webhook .* denied the request", re.IGNORECASE)

# Release states (release_states).
ABSENT = "absent"
OURS = "ours"
FOREIGN = "foreign"
BROKEN = "broken"


def webhook_not_serving(message: Any) -> bool:
    """True when an apply failed because an admission webhook is not serving yet (worth a retry)."""
    text = str(message or "")
    return bool(_WEBHOOK_NOT_SERVING.search(text)) and not _WEBHOOK_DENIED.search(text)


def _condition(resource: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for condition in (resource.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return condition
    return None


def not_ready_reason(resources: list[dict[str, Any]] | None, condition_types: list[str]) -> str:
    """ "" when the one resource in resources reports every condition type True for its current generation.

    Otherwise one phrase saying why not. "Current generation" is what makes the wait mean something:
    right after an update, the conditions still describe the previous generation until the operator
    has reconciled the new one. The RabbitMQ Cluster Operator (v2.22.3, internal/controller/
    rabbitmqcluster_controller.go) and the Messaging Topology Operator (v1.20.1, internal/controller/
    topology_controller.go) set status.observedGeneration only after a successful reconcile of that
    generation; cert-manager (v1.21.1) sets observedGeneration on each condition instead.
    """
    if not resources:
        return "not found"
    resource = resources[0]
    generation = (resource.get("metadata") or {}).get("generation")
    status = resource.get("status") or {}
    for condition_type in condition_types:
        condition = _condition(resource, condition_type)
        if condition is None:
            return f"no {condition_type} condition yet"
        if condition.get("status") != "True":
            detail = condition.get("message") or condition.get("reason") or ""
            return f"{condition_type} is {condition.get('status')}" + (f" ({detail})" if detail else "")
        observed = status.get("observedGeneration", condition.get("observedGeneration"))
        if observed != generation:
            return f"{condition_type} describes generation {observed}, not the current generation {generation}"
    return ""


def _by_name(objects: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {(item.get("metadata") or {}).get("name", ""): item for item in objects or []}


def _managed_by(resource: dict[str, Any], manager: str) -> bool:
    return any(entry.get("manager") == manager for entry in (resource.get("metadata") or {}).get("managedFields") or [])


def _annotations(resource: dict[str, Any]) -> dict[str, str]:
    return (resource.get("metadata") or {}).get("annotations") or {}


def _labels_match(namespace: dict[str, Any], labels: dict[str, str]) -> bool:
    found = (namespace.get("metadata") or {}).get("labels") or {}
    return all(found.get(key) == str(value) for key, value in labels.items())


def _label_text(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def release_states(
    releases: list[dict[str, Any]], observed: dict[str, Any], manager: str = "jobstack"
) -> dict[str, str]:
    """Who runs each release (cert-manager, an operator) on the cluster.

    releases: {name, crd, ...} as the roles publish them; observed: {"crds": [CRD objects],
    "deployments": {release name: [Deployment objects found by its label selector]}}.
    absent: neither its CRD nor a Deployment; ours: its CRD was applied by jobstack (server-side
    apply field manager); foreign: someone else installed it and its Deployment runs; broken: a CRD
    without a controller, or a controller without its CRD (left over from an uninstall).
    """
    crds = _by_name(observed.get("crds"))
    deployments = observed.get("deployments") or {}
    states = {}
    for release in releases:
        crd = crds.get(release["crd"])
        running = deployments.get(release["name"]) or []
        if crd is None:
            states[release["name"]] = BROKEN if running else ABSENT
        elif _managed_by(crd, manager):
            states[release["name"]] = OURS
        else:
            states[release["name"]] = FOREIGN if running else BROKEN
    return states


def installs(release: dict[str, Any], state: str) -> bool:
    """Whether jobstack applies the release: always; never; or auto, where the cluster has none or ours."""
    mode = release.get("install", "auto")
    return mode == "always" or (mode == "auto" and state in (ABSENT, OURS))


def releases_to_install(releases: list[dict[str, Any]], states: dict[str, str] | None) -> list[str]:
    """The names of the releases jobstack applies, given who runs them (a release not in states: absent)."""
    return [release["name"] for release in releases if installs(release, (states or {}).get(release["name"], ABSENT))]


def _release_problems(releases: list[dict[str, Any]], states: dict[str, str]) -> list[str]:
    problems = []
    for release in releases:
        if states.get(release["name"]) == BROKEN and release.get("install", "auto") == "auto":
            problems.append(
                f"{release['name']} is half installed (CustomResourceDefinition {release['crd']} without its "
                f"Deployment, or the other way round) and not by jobstack: remove the leftovers, or set "
                f"{release.get('variable', 'its install setting')}: always to install it over them"
            )
    return problems


def _names(observed: dict[str, Any], key: str) -> set[str]:
    return set(_by_name(observed.get(key)))


def _crd_problem(need: dict[str, Any], observed: dict[str, Any]) -> str | None:
    return None if need["name"] in _names(observed, "crds") else f"CustomResourceDefinition {need['name']} is missing"


def _class_problem(need: dict[str, Any], observed: dict[str, Any]) -> str | None:
    """A StorageClass or IngressClass by name, or the cluster's default one when the name is empty."""
    storage = need["kind"] == "storage_class"
    listed = observed.get("storage_classes" if storage else "ingress_classes") or []
    title = "StorageClass" if storage else "IngressClass"
    if need.get("name"):
        return None if need["name"] in _by_name(listed) else f"{title} {need['name']} is missing"
    default_key = f"{'storageclass' if storage else 'ingressclass'}.kubernetes.io/is-default-class"
    defaults = [item for item in listed if _annotations(item).get(default_key) == "true"]
    return None if defaults else f"no default {title} (the name is empty, so the cluster's default would be used)"


def _issuer_problem(need: dict[str, Any], observed: dict[str, Any]) -> str | None:
    issuers = observed.get("cluster_issuers")
    if issuers is None:
        return f"ClusterIssuer {need['name']} is missing: the cluster has no ClusterIssuer kind (no cert-manager)"
    issuer = _by_name(issuers).get(need["name"])
    if issuer is None:
        return f"ClusterIssuer {need['name']} is missing"
    condition = _condition(issuer, "Ready")
    return None if condition and condition.get("status") == "True" else f"ClusterIssuer {need['name']} is not Ready"


def _namespace_problem(need: dict[str, Any], observed: dict[str, Any]) -> str | None:
    labels = need.get("labels") or {}
    if any(_labels_match(item, labels) for item in observed.get("namespaces") or []):
        return None
    return f"no namespace is labelled {_label_text(labels)}"


def _release_namespace_problem(need: dict[str, Any], observed: dict[str, Any]) -> str | None:
    """A release someone else installed must run in a namespace our NetworkPolicy admits."""
    labels = need.get("labels") or {}
    running = (observed.get("deployments") or {}).get(need["release"]) or []
    where = {(item.get("metadata") or {}).get("namespace", "") for item in running}
    admitted = {
        (item.get("metadata") or {}).get("name", "")
        for item in observed.get("namespaces") or []
        if _labels_match(item, labels)
    }
    if not where or where & admitted:
        return None
    variable = need.get("variable", "the namespace labels")
    namespaces = ", ".join(sorted(where))
    return f"{need['release']} runs in namespace {namespaces}, which {variable} ({_label_text(labels)}) does not select"


_NEED_CHECKS = {
    "crd": _crd_problem,
    "storage_class": _class_problem,
    "ingress_class": _class_problem,
    "cluster_issuer": _issuer_problem,
    "namespace": _namespace_problem,
    "release_namespace": _release_namespace_problem,
}


def _need_problem(need: dict[str, Any], observed: dict[str, Any]) -> str | None:
    """What is missing for one need (with why it is needed), or None."""
    check = _NEED_CHECKS.get(need["kind"])
    problem = check(need, observed) if check else f"unknown kind of need {need['kind']!r}"
    if problem and need.get("because"):
        problem += f" ({need['because']})"
    return problem


def platform_problems(platform: dict[str, Any], observed: dict[str, Any], cluster: str) -> list[str]:
    """One line per piece the cluster lacks, each naming the piece and the cluster.

    platform: {"needs": [...], "releases": [...]} as the roles publish them (jobstack_platform_needs_<role>,
    merged): a need is {kind: crd | storage_class | ingress_class | cluster_issuer | namespace |
    release_namespace, name, labels (namespace kinds), because, release (optional), variable}; a need
    with a release is only checked when jobstack does not install that release itself. observed: what
    k8s_info returned: crds, deployments (per release), storage_classes, ingress_classes,
    cluster_issuers (None when the kind is unknown), namespaces.
    """
    releases = platform.get("releases") or []
    states = release_states(releases, observed)
    ours = {release["name"] for release in releases if installs(release, states[release["name"]])}
    problems = _release_problems(releases, states)
    seen = set()
    for need in platform.get("needs") or []:
        if need.get("release") in ours:
            continue
        problem = _need_problem(need, observed)
        if problem and problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return [f"cluster {cluster}: {problem}" for problem in problems]


def platform_merge(parts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The needs and releases of every role, as one {needs, releases}."""
    merged: dict[str, list[dict[str, Any]]] = {"needs": [], "releases": []}
    for part in parts:
        merged["needs"] += part.get("needs") or []
        merged["releases"] += part.get("releases") or []
    return merged


def release_lock(text: Any, path: str) -> dict[str, Any]:
    """The releases map of the lock file's text ({} for no file), or ValueError naming the file."""
    if not text:
        return {}
    try:
        document = yaml.safe_load(str(text))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    releases = (document or {}).get("releases") if isinstance(document, dict) else None
    if not isinstance(releases, dict):
        raise ValueError(f"{path} has no 'releases:' map; restore it from git, or remove it and run playbooks/lock.yml")
    return releases


def release_lock_error(text: Any, path: str) -> str:
    """ "" when the lock file's text is usable (or there is no file), else what is wrong with it."""
    try:
        release_lock(text, path)
    except ValueError as error:
        return str(error)
    return ""


def dns_egress_errors(entries: Any) -> list[str]:
    """What is wrong with jobstack_dns_egress: each entry is {cidr} or {namespace_labels, pod_labels}."""
    if not isinstance(entries, list) or not entries:
        return ["jobstack_dns_egress must list at least one DNS resolver"]
    errors = []
    for index, entry in enumerate(entries):
        keys = set(entry) if isinstance(entry, dict) else set()
        if keys == {"cidr"} and isinstance(entry["cidr"], str) and "/" in entry["cidr"]:
            continue
        pods = keys == {"namespace_labels", "pod_labels"}
        if pods and all(isinstance(entry[key], dict) and entry[key] for key in keys):
            continue
        errors.append(
            f"jobstack_dns_egress[{index}] must be {{cidr: <address>/<bits>}} or "
            f"{{namespace_labels: {{...}}, pod_labels: {{...}}}}, got {entry!r}"
        )
    return errors


class FilterModule:
    """Jinja2 filters of the jobstack collection about live clusters."""

    def filters(self) -> dict[str, Any]:
        return {
            "not_ready_reason": not_ready_reason,
            "webhook_not_serving": webhook_not_serving,
            "release_states": release_states,
            "releases_to_install": releases_to_install,
            "platform_problems": platform_problems,
            "platform_merge": platform_merge,
            "release_lock": release_lock,
            "release_lock_error": release_lock_error,
            "dns_egress_errors": dns_egress_errors,
        }
