"""Action plugin jobstack.deploy.deploy_dry_run: the deploy's own dry run, for the drift report.

What the inventory would deploy is described once, by the roles that deploy it. The drift report
therefore does not restate it: it runs site.yml itself in check mode with diff, limited to one
cluster, and records every task result through the callback jobstack.deploy.drift_record. A task
that would change something names an object that drifted; its diff says how.

The dry run is a second ansible-playbook run, started with the same inventories, extra variables and
vault settings as the run that calls this action (read from its command line), so that both see the
same values. See plugins/modules/deploy_dry_run.py for the documentation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from ansible import context
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC: dict[str, Any] = {
    "playbook": {"type": "path", "required": True},
    "limit": {"type": "str", "required": True},
    "tags": {"type": "list", "elements": "str", "default": []},
    "record": {"type": "path", "required": True},
    "log": {"type": "path", "required": True},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "int", "default": 1800},
}
CALLBACK = "jobstack.deploy.drift_record"


def ansible_playbook() -> str:
    """The ansible-playbook beside the running Python (the venv's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return beside if os.access(beside, os.X_OK) else (shutil.which("ansible-playbook") or "ansible-playbook")


def inherited_arguments(cliargs: Any) -> list[str]:
    """The options of this run that decide the values a deploy sees: inventories, extra vars, vault."""
    arguments: list[str] = []
    for inventory in cliargs.get("inventory") or ():
        arguments += ["-i", str(inventory)]
    for extra in cliargs.get("extra_vars") or ():
        arguments += ["-e", str(extra)]
    for vault_id in cliargs.get("vault_ids") or ():
        arguments += ["--vault-id", str(vault_id)]
    for password_file in cliargs.get("vault_password_files") or ():
        arguments += ["--vault-password-file", str(password_file)]
    return arguments


def read_records(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as stream:
            return [json.loads(line) for line in stream if line.strip()]
    except FileNotFoundError:
        return []


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        cliargs = context.CLIARGS
        if cliargs.get("ask_vault_pass"):
            return {
                **result,
                "failed": True,
                "msg": "The dry run cannot ask for the vault password: pass it with --vault-password-file FILE "
                "(or ANSIBLE_VAULT_PASSWORD_FILE) instead of --ask-vault-pass.",
            }
        command = [
            ansible_playbook(),
            args["playbook"],
            *inherited_arguments(cliargs),
            "--check",
            "--diff",
            "--limit",
            args["limit"],
            *(["--tags", ",".join(args["tags"])] if args["tags"] else []),
            *args["extra_args"],
        ]
        for path in (args["record"], args["log"]):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.exists(args["record"]):
            os.unlink(args["record"])
        environment = dict(os.environ)
        enabled = [name for name in environment.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if name]
        environment["ANSIBLE_CALLBACKS_ENABLED"] = ",".join([*enabled, CALLBACK])
        environment["JOBSTACK_DRIFT_RECORD"] = args["record"]
        environment["ANSIBLE_RETRY_FILES_ENABLED"] = "false"
        environment["ANSIBLE_NOCOLOR"] = "true"
        try:
            with open(args["log"], "w", encoding="utf-8") as log:
                completed = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    timeout=args["timeout"],
                    check=False,
                )
        except subprocess.TimeoutExpired:
            return {
                **result,
                "failed": True,
                "msg": f"The dry run of {args['playbook']} took longer than {args['timeout']} s; see {args['log']}.",
            }
        records = read_records(args["record"])
        result.update(changed=False, rc=completed.returncode, records=records, log=args["log"])
        if completed.returncode != 0:
            with open(args["log"], encoding="utf-8") as log:
                tail = log.read()[-3000:]
            failed = [record for record in records if record["outcome"] == "failed"]
            result.update(
                failed=True,
                msg=(
                    f"The dry run (check mode) of {os.path.basename(args['playbook'])} for {args['limit']} failed "
                    f"with rc {completed.returncode}, so nothing could be compared"
                    + (f"; first failed task: {failed[0]['task']}: {failed[0]['msg']}" if failed else "")
                    + f". Full output: {args['log']}. Last lines:\n{tail}"
                ),
            )
        return result
