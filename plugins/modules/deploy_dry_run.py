#!/usr/bin/python
"""Documentation of the action plugin jobstack.deploy.deploy_dry_run (plugins/action/deploy_dry_run.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_dry_run
short_description: Run a deploy playbook in check mode with diff for one cluster and record every task result
description:
  - Starts C(ansible-playbook PLAYBOOK --check --diff --limit LIMIT) with the inventories, extra
    variables and vault options of the calling run, and the callback C(jobstack.deploy.drift_record)
    enabled, which writes one JSON object per task result to O(record).
  - Returns those records. Changes nothing itself; the dry run is check mode.
  - Fails, with the last lines of the run's output, when the dry run fails.
version_added: 0.3.0
author: jobstack maintainers
options:
  playbook:
    description: The deploy playbook (site.yml).
    type: path
    required: true
  limit:
    description: The one cluster (inventory host) to dry-run.
    type: str
    required: true
  tags:
    description: Tags of the dry run (the stages whose objects are compared).
    type: list
    elements: str
    default: []
  record:
    description: File the callback writes the task results to (JSON lines); replaced.
    type: path
    required: true
  log:
    description: File that receives the output of the dry run.
    type: path
    required: true
  extra_args:
    description: More ansible-playbook arguments for the dry run.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds the dry run may take.
    type: int
    default: 1800
"""

EXAMPLES = r"""
- name: Dry-run the deploy of this cluster.
  jobstack.deploy.deploy_dry_run:
    playbook: "{{ playbook_dir }}/site.yml"
    limit: "{{ inventory_hostname }}"
    tags: [broker, apps]
    record: /tmp/drift/docker-local.records.jsonl
    log: /tmp/drift/docker-local.log
"""

RETURN = r"""
rc:
  description: Exit code of the dry run.
  type: int
  returned: always
records:
  description: One dict per task result (host, task, role, action, outcome, changed, censored, item, object, diff, msg).
  type: list
  returned: always
log:
  description: File with the output of the dry run.
  type: str
  returned: always
"""
