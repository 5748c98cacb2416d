"""Drift report of one cluster: what the deploy's dry run would change, and what runs but is not described.

Inputs (files the drift role writes):
  --records   the dry run's task results, one JSON object per line (callback jobstack.deploy.drift_record);
  --observed  JSON of the objects labelled as ours that run: {containers, networks, volumes} as
              community.docker.docker_host_info lists them, or {kubernetes: [objects]} from k8s_info;
              --hidden NAME for Docker objects that a no_log task describes.
Outputs: a text report on stdout (and in --text-out), the same as JSON in --json-out. Exit 0 when
nothing drifted, 3 when something did, 2 on bad input. Standard library only: it runs with the
control node's Python.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DRIFTED = 3
# Fields a Kubernetes server fills in or moves on every write: never drift.
IGNORED_PREFIXES = (
    "metadata.managedFields",
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.uid",
    "metadata.creationTimestamp",
    "metadata.annotations.deployment.kubernetes.io/revision",
    "status",
)
MAX_VALUE_CHARS = 300


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted.path: leaf} of nested dicts; lists are leaves (a container list compares as a whole)."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value} if prefix else {}


def field_changes(diff: Any) -> list[dict[str, Any]]:
    """[{field, running, deployed}] from a module's diff ({before, after}, or a list of such)."""
    diffs = diff if isinstance(diff, list) else [diff]
    changes: list[dict[str, Any]] = []
    for entry in diffs:
        if not isinstance(entry, dict):
            continue
        before, after = entry.get("before"), entry.get("after")
        if not isinstance(before, dict) and not isinstance(after, dict):
            if before != after and (before or after):
                changes.append({"field": "(content)", "running": before, "deployed": after})
            continue
        flat_before, flat_after = flatten(before or {}), flatten(after or {})
        for field in sorted(set(flat_before) | set(flat_after)):
            if field.startswith(IGNORED_PREFIXES):
                continue
            if flat_before.get(field) != flat_after.get(field):
                changes.append({"field": field, "running": flat_before.get(field), "deployed": flat_after.get(field)})
    return changes


def is_creation(diff: Any) -> bool:
    """Whether the diff creates the object: docker_container's exists false -> true, or an empty before."""
    entries = diff if isinstance(diff, list) else [diff]
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        before = entry.get("before")
        if isinstance(before, dict) and before.get("exists") is False:
            return True
        if "before" in entry and not before and entry.get("after"):
            return True
    return False


def identity(obj: dict[str, Any]) -> str:
    """container/<name>, or <Kind>/<namespace>/<name> for Kubernetes objects."""
    if obj.get("type") == "kubernetes":
        namespace = f"{obj['namespace']}/" if obj.get("namespace") else ""
        return f"{obj.get('kind')}/{namespace}{obj.get('name')}"
    return f"{obj.get('type')}/{obj.get('name')}"


def observed_objects(observed: dict[str, Any]) -> list[dict[str, Any]]:
    """[{type, name, ...}] of what runs, from the listings of docker_host_info or k8s_info."""
    found: list[dict[str, Any]] = []
    for container in observed.get("containers") or []:
        names = container.get("Names") or []
        found += [{"type": "container", "name": name.lstrip("/")} for name in names[:1]]
    found += [{"type": "network", "name": network.get("Name")} for network in observed.get("networks") or []]
    found += [{"type": "volume", "name": volume.get("Name")} for volume in observed.get("volumes") or []]
    for obj in observed.get("kubernetes") or []:
        metadata = obj.get("metadata") or {}
        found.append(
            {
                "type": "kubernetes",
                "api_version": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "namespace": metadata.get("namespace"),
                "name": metadata.get("name"),
            }
        )
    return found


def compare(records: list[dict[str, Any]], observed: dict[str, Any], hidden: list[str]) -> dict[str, Any]:
    """The drift of one cluster: objects that differ, are missing or are extra, and other changes."""
    running = {identity(obj): obj for obj in observed_objects(observed)}
    described = {identity({"type": "container", "name": name}) for name in hidden}
    differ: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for record in records:
        obj = record.get("object")
        if obj and obj.get("state") != "absent" and obj.get("name"):
            described.add(identity(obj))
        if not record.get("changed"):
            continue
        where = {"task": record.get("task"), "role": record.get("role")}
        if record.get("censored"):
            other.append({**where, "why": "would change; details hidden (the task is no_log)"})
            continue
        if not obj or not obj.get("name") or obj.get("type") == "kubernetes-manifest":
            other.append({**where, "why": "would change", "changes": field_changes(record.get("diff"))})
            continue
        name = identity(obj)
        if obj.get("state") == "absent":
            extra.append({"object": name, "why": "the deploy would remove it", **where})
            running.pop(name, None)
        elif is_creation(record.get("diff")):
            missing.append({"object": name, **where})
        else:
            differ.append({"object": name, "changes": field_changes(record.get("diff")), **where})
    for name in sorted(set(running) - described):
        if name not in {item["object"] for item in extra}:
            extra.append({"object": name, "why": "labelled as ours, described by no role"})
    drifted = bool(differ or missing or extra or other)
    return {"drifted": drifted, "differ": differ, "missing": missing, "extra": extra, "other": other}


def short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def text_report(report: dict[str, Any]) -> str:
    head = f"Drift report of cluster {report['cluster']} ({report['environment']}, target {report['target']}): "
    if not report["drifted"]:
        return head + "no drift; what runs is what the inventory would deploy.\n"
    counts = {key: len(report[key]) for key in ("differ", "missing", "extra", "other")}
    lines = [
        head + f"DRIFTED: {counts['differ']} differ, {counts['missing']} missing, {counts['extra']} extra, "
        f"{counts['other']} other change(s)."
    ]
    for item in report["differ"]:
        lines.append(f"  DIFFERS  {item['object']}  (task: {item['task']})")
        for change in item["changes"] or [{"field": "(not shown by the module)", "running": "", "deployed": ""}]:
            lines.append(
                f"      {change['field']}: running {short(change['running'])} -> deployed {short(change['deployed'])}"
            )
    for item in report["missing"]:
        lines.append(f"  MISSING  {item['object']}  (task: {item['task']})")
    for item in report["extra"]:
        lines.append(f"  EXTRA    {item['object']}  ({item['why']})")
    for item in report["other"]:
        lines.append(f"  CHANGE   {item['role']}: {item['task']}  ({item['why']})")
        for change in item.get("changes") or []:
            lines.append(
                f"      {change['field']}: running {short(change['running'])} -> deployed {short(change['deployed'])}"
            )
    lines.append("Re-deploy (ansible-playbook site.yml -i <inventory> --limit <cluster>) to bring it back.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--observed", type=Path, required=True)
    parser.add_argument("--hidden", action="append", default=[])
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--environment", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--json-out", type=Path, required=True)
    parser.add_argument("--text-out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        records = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
        observed = json.loads(sys.stdin.read() if str(args.observed) == "-" else args.observed.read_text())
    except (OSError, ValueError) as error:
        print(f"drift_report: cannot read the dry run's records or the observed objects: {error}", file=sys.stderr)
        return 2
    if not records:
        print(f"drift_report: {args.records} holds no task result: the dry run compared nothing", file=sys.stderr)
        return 2
    report = {
        "cluster": args.cluster,
        "environment": args.environment,
        "target": args.target,
        **compare(records, observed, args.hidden),
    }
    text = text_report(report)
    args.json_out.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    args.text_out.write_text(text)
    sys.stdout.write(text)
    return DRIFTED if report["drifted"] else 0


if __name__ == "__main__":
    sys.exit(main())
