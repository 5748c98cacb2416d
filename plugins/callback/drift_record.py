"""Callback plugin jobstack.deploy.drift_record: what a check-mode deploy would change, as JSON lines.

The drift report (playbooks/drift.yml) runs site.yml in check mode with diff, the deploy's own dry
run, and enables this callback for that run only (ANSIBLE_CALLBACKS_ENABLED, set by the action
jobstack.deploy.deploy_dry_run). It appends one JSON object per task result (per loop item) to the
file named by JOBSTACK_DRIFT_RECORD: the cluster, task, module, whether it would change, its diff,
and which object the task describes (a container name, a Kubernetes kind/namespace/name). A file
per run, never the terminal: the report reads it after the run.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: drift_record
type: notification
short_description: Record each task result of a check-mode deploy for the drift report
description:
  - Appends one JSON object per task result (and per loop item) to the file named by the environment
    variable E(JOBSTACK_DRIFT_RECORD) - host, task, action, changed, failed, skipped, diff and the
    object the task describes. Results of C(no_log) tasks are recorded without their content.
  - Enabled only for the dry run that the action C(jobstack.deploy.deploy_dry_run) starts.
version_added: 0.3.0
author: jobstack maintainers
requirements:
  - enabled through ANSIBLE_CALLBACKS_ENABLED
"""

# Modules whose arguments name a deployed object; the report compares these with what runs.
OBJECT_MODULES = {
    "community.docker.docker_container": "container",
    "community.docker.docker_network": "network",
    "community.docker.docker_volume": "volume",
    "kubernetes.core.k8s": "kubernetes",
}
STATE_ABSENT = "absent"


def described_object(action: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The object a task describes, from its (invocation) arguments; None for other tasks."""
    kind = OBJECT_MODULES.get(action)
    if kind is None or not isinstance(args, dict):
        return None
    state = str(args.get("state") or "present")
    if kind != "kubernetes":
        return {"type": kind, "name": args.get("name"), "state": state}
    definition = args.get("definition")
    if isinstance(definition, dict):
        metadata = definition.get("metadata") or {}
        return {
            "type": "kubernetes",
            "api_version": definition.get("apiVersion"),
            "kind": definition.get("kind"),
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "state": state,
        }
    if args.get("kind") and args.get("name"):
        return {
            "type": "kubernetes",
            "api_version": args.get("api_version"),
            "kind": args.get("kind"),
            "namespace": args.get("namespace"),
            "name": args.get("name"),
            "state": state,
        }
    # A whole release manifest (src:): its objects are not named here.
    return {"type": "kubernetes-manifest", "name": args.get("src"), "state": state}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "jobstack.deploy.drift_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("JOBSTACK_DRIFT_RECORD", "")

    def _record(self, result: Any, outcome: str, item: bool = False) -> None:
        if not self._path:
            return
        data = dict(result.result)
        # A loop's summary repeats its items, each recorded on its own.
        if not item and isinstance(data.get("results"), list):
            return
        task = result.task
        action = str(task.resolved_action or task.action)
        censored = bool(data.get("_ansible_no_log")) or "censored" in data
        args = (data.get("invocation") or {}).get("module_args") or {}
        if not args and not censored:
            args = task.args if isinstance(task.args, dict) else {}
        entry = {
            "host": result.host.get_name(),
            "task": result.task_name,
            "role": task._role.get_name() if task._role else "",
            "action": action,
            "outcome": outcome,
            "changed": bool(data.get("changed")),
            "check_mode": bool(task.check_mode) or bool(data.get("_ansible_check_mode")),
            "censored": censored,
            "item": self._get_item_label(data) if item else None,
            "object": None if censored else described_object(action, args),
            "diff": None if censored else data.get("diff"),
            "msg": None if censored else str(data.get("msg") or "")[:2000] or None,
        }
        with open(self._path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self._record(result, "ok", item=True)

    def v2_runner_item_on_failed(self, result: Any) -> None:
        self._record(result, "failed", item=True)
