"""Action plugin jobstack.deploy.render_manifests: render mode's writer, run on the control node.

Render mode writes every object a deploy would apply to one file per object. Copying them one by one
(one module run per file) made render mode slow; this action writes a whole stage in one task,
in-process on the control node, and leaves files whose content is unchanged alone, so a second
render reports no change. See plugins/modules/render_manifests.py for the documentation.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.plugins.filter.core import to_nice_yaml

# The files this run has written (or found up to date), per cluster: the prune step keeps these.
RECORD_FACT = "jobstack_render_files"

ARGUMENT_SPEC: dict[str, Any] = {
    "dest": {"type": "path", "required": True},
    "stages": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "stage": {"type": "str", "required": True},
            "objects": {"type": "list", "elements": "dict", "required": True},
            # How the apply path waits for the stage; render mode has nothing to wait for.
            "wait": {"type": "bool"},
            "ready": {"type": "list", "elements": "str"},
            "wait_timeout": {"type": "int"},
        },
    },
    "files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {"name": {"type": "str", "required": True}, "content": {"type": "str", "required": True}},
    },
    "reset": {"type": "bool", "default": False},
    "prune": {"type": "bool", "default": False},
}


def object_file_name(stage: str, number: int, obj: dict[str, Any]) -> str:
    """<stage>-<NN>-<kind>-<name>.yaml: sorting the names gives the apply order."""
    kind = str(obj.get("kind", "unknown")).lower()
    name = str(obj.get("metadata", {}).get("name", "unnamed"))
    return f"{stage}-{number:02d}-{kind}-{name}.yaml"


def object_file_content(obj: dict[str, Any]) -> str:
    """The object as YAML in the author's key order, as `to_nice_yaml(indent=2)` writes it."""
    return str(to_nice_yaml(obj, indent=2, width=4096, sort_keys=False))


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as existing:
            return existing.read()
    except OSError:
        return None


def write_text(path: str, content: str) -> None:
    """Write through a temporary file in the same directory, so a reader never sees half a file."""
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".render-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class ActionModule(ActionBase):
    """Write rendered objects and files to a cluster's render directory; prune what a run did not write."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        # Unknown or mistyped options fail the task here, naming the option.
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        dest = str(args["dest"])

        wanted: list[tuple[str, str]] = []
        for group in args["stages"]:
            for number, obj in enumerate(group["objects"], start=1):
                wanted.append((object_file_name(group["stage"], number, obj), object_file_content(obj)))
        wanted += [(entry["name"], entry["content"]) for entry in args["files"]]

        recorded = [] if args["reset"] else list((task_vars or {}).get(RECORD_FACT) or [])
        recorded += [name for name, _ in wanted if name not in recorded]

        check_mode = bool(self._task.check_mode)
        diffs: list[dict[str, str]] = []
        written: list[str] = []
        for name, content in wanted:
            path = os.path.join(dest, name)
            before = read_text(path)
            if before == content:
                continue
            written.append(name)
            diffs.append({"before": before or "", "after": content, "before_header": path, "after_header": path})
            if not check_mode:
                os.makedirs(dest, mode=0o755, exist_ok=True)
                write_text(path, content)

        removed: list[str] = []
        if args["prune"] and os.path.isdir(dest):
            for name in sorted(os.listdir(dest)):
                path = os.path.join(dest, name)
                if name in recorded or not os.path.isfile(path):
                    continue
                removed.append(name)
                before = read_text(path) or ""
                diffs.append({"before": before, "after": "", "before_header": path, "after_header": "(removed)"})
                if not check_mode:
                    os.unlink(path)

        result.update(changed=bool(written or removed), written=written, removed=removed, dest=dest)
        result["ansible_facts"] = {RECORD_FACT: recorded}
        if self._task.diff and diffs:
            result["diff"] = diffs
        return result
