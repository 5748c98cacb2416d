#!/usr/bin/python
"""Documentation of the action plugin jobstack.deploy.render_manifests (plugins/action/render_manifests.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: render_manifests
short_description: Write rendered Kubernetes objects and files to a render directory
description:
  - Render mode's writer. Writes each object of O(stages) to O(dest) as
    C(<stage>-<NN>-<kind>-<name>.yaml) (NN from 01 in list order within a stage, so sorted names give
    the apply order) and each entry of O(files) as a file of its own.
  - Leaves files whose content is unchanged alone, so rendering the same objects again reports no change.
  - Records the names it wrote (or found up to date) in the fact C(jobstack_render_files), so that a
    later call with O(prune=true) can remove every file of O(dest) that this run did not render.
  - Runs on the control node in the Ansible process; it contacts no host and no cluster.
version_added: 0.1.0
author: jobstack maintainers
options:
  dest:
    description: Render directory of one cluster; created when missing.
    type: path
    required: true
  stages:
    description: Groups of Kubernetes objects in apply order, each written as C(<stage>-<NN>-<kind>-<name>.yaml).
    type: list
    elements: dict
    default: []
    suboptions:
      stage:
        description: Apply-order prefix of the file names, e.g. C(30-rabbitmq_cluster).
        type: str
        required: true
      objects:
        description: Kubernetes objects (dicts with apiVersion, kind, metadata.name) in apply order.
        type: list
        elements: dict
        required: true
      wait:
        description: Ignored here; how the apply path of roles/_common waits for the stage.
        type: bool
      ready:
        description: Ignored here; the condition types the apply path of roles/_common waits for.
        type: list
        elements: str
      wait_timeout:
        description: Ignored here; see O(stages[].wait).
        type: int
  files:
    description: Other files to write, such as C(render-info.json) or a release manifest pointer.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: File name inside O(dest).
        type: str
        required: true
      content:
        description: Content of the file.
        type: str
        required: true
  reset:
    description: Start a new record of rendered files (the first call of a render).
    type: bool
    default: false
  prune:
    description: Remove the files of O(dest) that this run did not write or find up to date.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what it would write or remove, and writes nothing.
  diff_mode:
    support: full
    description: Shows the change of every file it writes or removes.
"""

EXAMPLES = r"""
- name: Write the objects of the engine to the render directory.
  jobstack.deploy.render_manifests:
    dest: "{{ jobstack_render_dir }}"
    stages:
      - stage: 40-engine
        objects: "{{ __service_objects }}"
"""

RETURN = r"""
written:
  description: Names of the files written (new or changed).
  returned: always
  type: list
  elements: str
removed:
  description: Names of the files removed by O(prune).
  returned: always
  type: list
  elements: str
"""
