"""Filters of the jobstack.deploy collection: the region gate and the rollback decision.

A region's rollout passes its gate when every new Deployment (Kubernetes) or container (Docker) of
both services is up, and the smoke test's jobs come back from the new engine release. These
filters read the cluster's answers and say whether to wait, pass or fail; when a step fails, they
decide what to put back on the last good release and write the one message that stops the rollout.
They are plain functions of their inputs so that tests/ansible/test_release_logic.py can check
every decision without a cluster.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Longest failure text quoted in the stop message: the whole error is printed above it anyway.
_QUOTE_LIMIT = 600

PROGRESSING = "progressing"
COMPLETE = "complete"
FAILED = "failed"
STARTING = "starting"
HEALTHY = "healthy"


def _status(state: str, message: str) -> dict[str, str]:
    return {"state": state, "message": message}


def rollout_status(deployment: dict[str, Any] | None) -> dict[str, str]:
    """Where a Deployment's rollout stands, as `kubectl rollout status` judges it.

    kubernetes.core's `wait: true` checks observedGeneration, replicas and available replicas but not
    updatedReplicas: right after an update the controller reports the new generation while the new
    ReplicaSet has no pods yet, so old pods alone make it look done. Every replica must run the
    current template (updated), and no old one may be left, before the rollout counts as complete.
    """
    if not deployment:
        return _status(PROGRESSING, "the Deployment is not there yet")
    metadata = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    name = f"{metadata.get('namespace', '')}/{metadata.get('name', '?')}"
    generation = int(metadata.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return _status(PROGRESSING, f"Deployment {name}: the controller has not yet seen generation {generation}")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return _status(FAILED, f"Deployment {name} exceeded its progress deadline: {condition.get('message', '')}")
    spec_replicas = (deployment.get("spec") or {}).get("replicas")
    wanted = 1 if spec_replicas is None else int(spec_replicas)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < wanted:
        return _status(PROGRESSING, f"Deployment {name}: {updated} of {wanted} replicas run the new template")
    if total > updated:
        return _status(PROGRESSING, f"Deployment {name}: {total - updated} old replicas are still running")
    if min(ready, available) < updated:
        return _status(
            PROGRESSING, f"Deployment {name}: {min(ready, available)} of {updated} new replicas are ready and available"
        )
    return _status(COMPLETE, f"Deployment {name}: {updated} of {wanted} replicas updated, ready and available")


def pods_summary(pods: list[dict[str, Any]] | None) -> str:
    """One line per pod of a Deployment that did not roll out: each container's state, restarts and last
    exit, e.g. 'engine-7d9c-x2p4f: engine waiting CrashLoopBackOff, 4 restarts, last exit code 3'."""
    lines = []
    for pod in pods or []:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        if not containers:
            lines.append(f"{name}: {status.get('phase', 'Pending')}, no container started")
            continue
        for container in containers:
            state = container.get("state") or {}
            if "waiting" in state:
                now = f"waiting {state['waiting'].get('reason', '')}".rstrip()
            elif "terminated" in state:
                now = f"terminated {state['terminated'].get('reason', '')}".rstrip()
            else:
                now = "running" + ("" if container.get("ready") else ", not ready")
            last = ((container.get("lastState") or {}).get("terminated") or {}).get("exitCode")
            detail = f", last exit code {last}" if last is not None else ""
            restarts = container.get("restartCount", 0)
            lines.append(f"{name}: {container.get('name', '?')} {now}, {restarts} restarts{detail}")
    return "; ".join(lines) if lines else "none found"


def container_gate(info: dict[str, Any] | None, restarts_before: int = 0) -> dict[str, str]:
    """Where a new container stands: healthy (its healthcheck passed), starting, or failed.

    `info` is what community.docker.docker_container_info returns. A container that exited, is
    restarting, or restarted since `restarts_before` (its RestartCount when it was started) has failed:
    with a restart policy Docker starts it again and its health goes back to starting, so waiting on the
    health alone would only time out.
    """
    if not info or not info.get("exists", True) or not info.get("container"):
        return _status(FAILED, "the container is missing")
    container = info["container"]
    name = str(container.get("Name", "?")).lstrip("/")
    state = container.get("State") or {}
    restarts = int(container.get("RestartCount") or 0)
    exit_code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return _status(FAILED, f"{name} was killed for lack of memory (OOMKilled)")
    if state.get("Status") in ("exited", "dead"):
        return _status(FAILED, f"{name} exited with code {exit_code}")
    if state.get("Restarting") or restarts > restarts_before:
        # A restarted container reports exit code 0 again while it runs; the code is worth showing only
        # while it is down.
        code = f" (exit code {exit_code})" if exit_code else ""
        times = restarts - restarts_before
        return _status(FAILED, f"{name} exits and restarts: {times} restart(s) since it was started{code}")
    health = state.get("Health")
    if not health:
        return _status(HEALTHY, f"{name} runs (no healthcheck)")
    if health.get("Status") == "healthy":
        return _status(HEALTHY, f"{name} is healthy")
    log = health.get("Log") or []
    last = str(log[-1].get("Output", "")).strip()[:300] if log else ""
    return _status(STARTING, f"{name} is {health.get('Status', 'starting')}; last check: {last or 'none yet'}")


def release_id(services: dict[str, Any]) -> str:
    """12 hex digits naming a release: a hash of the services' images and definitions (what was applied)."""
    canonical = json.dumps(services, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def release_summary(services: dict[str, Any], release: str | None = None) -> str:
    """'release 1a2b3c4d5e6f (engine jobstack-engine@sha256:..., user_interface ...)' for the messages."""
    images = ", ".join(f"{name} {(services[name] or {}).get('image', '?')}" for name in sorted(services))
    return f"release {release or release_id(services)} ({images})"


def failure_text(result: dict[str, Any] | None) -> str:
    """The message of a failed task result; for a loop, the first failed item's (Ansible says only
    'One or more items failed')."""
    if not result:
        return "no message"
    for item in result.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            return failure_text(item)
    message = result.get("msg") or result.get("stderr") or result.get("message") or "no message"
    text = " ".join(str(message).split())
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def rollback_plan(
    deployed: dict[str, Any] | None,
    record: dict[str, Any] | None,
    rollback: bool = True,
    dry_run: bool = False,
    record_error: str = "",
) -> dict[str, Any]:
    """What to put back after a failed step of a region's rollout.

    deployed: the service definitions this run applied or started to apply ({} when the failure came
    before the services); record: the region's last good release ({} or None on a first deploy).
    Only the services whose definition differs from the record are rolled back: an unchanged
    service is already on its last good release and is left running.
    Returns {'rollback': bool, 'services': [...], 'reason': why not, 'from': ..., 'to': ...}.
    """
    deployed = deployed or {}
    recorded = (record or {}).get("services") or {}
    plan: dict[str, Any] = {"rollback": False, "services": [], "reason": "", "from": "", "to": ""}
    if recorded:
        plan["to"] = release_summary(recorded, (record or {}).get("release"))
        if (record or {}).get("recorded_at"):
            plan["to"] += f", recorded {(record or {})['recorded_at']}"
    if dry_run:
        plan["reason"] = "Check mode and render mode change nothing, so there is nothing to roll back."
        return plan
    if not deployed:
        plan["reason"] = (
            "The failure came before the services were changed, so they still run what they ran before; "
            "nothing was rolled back."
        )
        return plan
    if record_error:
        plan["reason"] = f"The last good release could not be read ({record_error}), so nothing was rolled back."
        return plan
    if not recorded:
        plan["reason"] = (
            "No last good release is recorded for this cluster (first deploy), so there is nothing to roll back "
            "to; the failed state is left in place."
        )
        return plan
    changed = sorted(name for name in deployed if deployed[name] != recorded.get(name))
    unknown = [name for name in changed if name not in recorded]
    changed = [name for name in changed if name in recorded]
    # The release this run would have left the region on: the record with this run's definitions over it.
    plan["from"] = release_summary({**recorded, **deployed}) if changed else ""
    if not changed:
        plan["reason"] = f"The services this run deployed are its last good {plan['to']}; nothing to roll back."
        if unknown:
            plan["reason"] += f" The record has no definition of {', '.join(unknown)}, which stays as deployed."
        return plan
    if not rollback:
        plan["services"] = changed
        plan["reason"] = (
            f"With rollback=false the failed state is kept for debugging: {' and '.join(changed)} not rolled back "
            f"to the last good {plan['to']}."
        )
        return plan
    plan["rollback"] = True
    plan["services"] = changed
    if unknown:
        plan["reason"] = f"The record has no definition of {', '.join(unknown)}, which stays as deployed."
    return plan


def rollback_stages(recorded: dict[str, Any], services: list[str]) -> list[dict[str, Any]]:
    """The recorded Kubernetes objects of the services to roll back, as roles/_common apply stages, each
    waited for through the gate (its Deployment's rollout)."""
    return [
        {"stage": recorded[name]["stage"], "objects": recorded[name]["objects"], "wait": True}
        for name in services
        if name in recorded
    ]


def rollback_message(
    plan: dict[str, Any],
    outcome: dict[str, Any],
    failed_step: str,
    failed_msg: str,
    cluster: str,
    hosts: list[str] | None = None,
    regions: dict[str, str] | None = None,
) -> str:
    """The one message that stops the rollout: what failed, what was rolled back from which release to
    which (or why nothing was), and what happened to the other regions.

    outcome: {'rolled_back': bool, 'smoke_test': 'passed' | 'failed' | 'not run', 'error': text}.
    hosts: the clusters of the play in rollout order; regions: each cluster's region. The clusters
    after this one did not start (serial: 1); the ones before it passed their gate.
    """
    hosts = list(hosts or [cluster])
    regions = regions or {}
    position = hosts.index(cluster) if cluster in hosts else len(hosts)

    def named(host: str) -> str:
        return f"{regions.get(host) or 'unnamed region'} ({host})"

    later = [named(host) for host in hosts[position + 1 :]]
    earlier = [named(host) for host in hosts[:position]]
    where = f"region {regions.get(cluster) or 'unnamed'} (cluster {cluster})"
    failed_msg = failed_msg.strip() or "no message"
    ending = "" if failed_msg.endswith((".", "!", "?")) else "."
    parts = [f"Rollout stopped in {where}: step '{failed_step}' failed: {failed_msg}{ending}"]
    if plan.get("rollback"):
        services = " and ".join(plan["services"])
        if outcome.get("rolled_back"):
            parts.append(f"Rolled back {services} from {plan['from']} to the last good {plan['to']}.")
            if outcome.get("smoke_test") == "passed":
                parts.append("The region passed its smoke test again on the last good release.")
            else:
                parts.append(
                    f"The smoke test FAILED again after the rollback ({outcome.get('error') or 'no message'}): "
                    "the region needs attention."
                )
        else:
            parts.append(
                f"Rolling back {services} from {plan['from']} to the last good {plan['to']} FAILED too "
                f"({outcome.get('error') or 'no message'}): the region needs attention."
            )
    if plan.get("reason"):
        parts.append(plan["reason"])
    others = "The regions after it" if earlier else "The other regions"
    if later:
        parts.append(f"{others} were not touched: {', '.join(later)} did not start.")
    else:
        parts.append(f"{others} were not touched: there are none after it.")
    if earlier:
        parts.append(f"Regions rolled out before it passed their gate and keep the new release: {', '.join(earlier)}.")
    return " ".join(parts)


class FilterModule:
    """Jinja2 filters of the region gate and the rollback."""

    def filters(self) -> dict[str, Any]:
        return {
            "rollout_status": rollout_status,
            "container_gate": container_gate,
            "pods_summary": pods_summary,
            "release_id": release_id,
            "release_summary": release_summary,
            "failure_text": failure_text,
            "rollback_plan": rollback_plan,
            "rollback_stages": rollback_stages,
            "rollback_message": rollback_message,
        }
