"""Filters of the jobstack.deploy collection: a region drain.

A drain puts the source region's user interface back on its recorded release (roles/release) with
one setting more, drain_to_url: POST /jobs then answers 503 with the URL of the region to submit to,
and GET keeps working. These filters add (or remove) that setting in the recorded definitions, for
the Docker containers and for the Kubernetes objects, so that nothing else of the release changes.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

# The user interface's setting (section [user-interface], environment USER_INTERFACE_DRAIN_TO_URL).
SETTING = "drain_to_url"
ENVIRONMENT = "USER_INTERFACE_DRAIN_TO_URL"
# The Deployment's pod template annotation that rolls the pods when config.ini changes.
CHECKSUM = "checksum/config"


def drain_containers(containers: list[dict[str, Any]], url: str = "") -> list[dict[str, Any]]:
    """The recorded docker_container arguments of the user interface, with USER_INTERFACE_DRAIN_TO_URL set
    to url ('' removes it: the recorded release as it was)."""
    result = copy.deepcopy(containers)
    for container in result:
        env = dict(container.get("env") or {})
        env.pop(ENVIRONMENT, None)
        if url:
            env[ENVIRONMENT] = url
        container["env"] = env
    return result


def _with_setting(config_ini: str, url: str) -> str:
    """config.ini with the drain_to_url line replaced, added (url) or removed (''). The file has one
    section, the user interface's, so a line at the end belongs to it."""
    lines = [line for line in config_ini.splitlines() if not line.replace(" ", "").startswith(SETTING + "=")]
    if url:
        lines.append(f"{SETTING} = {url}")
    return "\n".join(lines) + ("\n" if config_ini.endswith("\n") else "")


def drain_objects(objects: list[dict[str, Any]], url: str = "") -> list[dict[str, Any]]:
    """The recorded Kubernetes objects of the user interface with drain_to_url in its ConfigMap's config.ini
    ('' removes it), and the Deployment's checksum annotation updated so that the pods roll and read it."""
    result = copy.deepcopy(objects)
    config = None
    for item in result:
        if item.get("kind") == "ConfigMap" and "config.ini" in (item.get("data") or {}):
            item["data"]["config.ini"] = _with_setting(item["data"]["config.ini"], url)
            config = item["data"]["config.ini"]
    if config is None:
        raise ValueError("the recorded objects have no ConfigMap with a config.ini")
    for item in result:
        if item.get("kind") == "Deployment":
            annotations = item["spec"]["template"]["metadata"].setdefault("annotations", {})
            annotations[CHECKSUM] = hashlib.sha256(config.encode()).hexdigest()
    return result


class FilterModule:
    """Jinja2 filters of the region drain."""

    def filters(self) -> dict[str, Any]:
        return {"drain_containers": drain_containers, "drain_objects": drain_objects}
