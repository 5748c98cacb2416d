"""Filters shared by the jobstack roles: Kubernetes quantity checks and Secret redaction."""

from __future__ import annotations

import copy
import os
import re
from typing import Any

DOCUMENTATION = ""  # filters below are documented in their docstrings and in roles/_common/README.md

# Kubernetes resource.Quantity: a signed decimal number with an optional suffix.
# Binary SI (Ki..Ei), decimal SI (n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2).
_QUANTITY = re.compile(
    r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
# What we accept for a container's CPU: cores ("1", "0.5") or millicores ("250m").
_CPU = re.compile(r"^(?:[0-9]+(?:\.[0-9]{1,3})?|[0-9]+m)$")
# What we accept for a container's memory: bytes with a binary or decimal SI suffix ("512Mi", "1G").
_MEMORY = re.compile(r"^[0-9]+(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")

# "REDACTED" is also valid base64 (8 characters of its alphabet), so a redacted `data` map stays well-formed.
REDACTED = "REDACTED"


def _text(value: Any) -> str | None:
    """Quantities may be written as YAML numbers (cpu: 1); anything else is not a quantity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def k8s_quantity_ok(value: Any) -> bool:
    """True when value parses as any Kubernetes resource.Quantity."""
    text = _text(value)
    return text is not None and bool(_QUANTITY.match(text))


def k8s_cpu_ok(value: Any) -> bool:
    """True for a CPU amount a container may request: '2', '0.5' or '250m'."""
    text = _text(value)
    return text is not None and bool(_CPU.match(text)) and k8s_quantity_ok(text)


def k8s_memory_ok(value: Any) -> bool:
    """True for a memory amount a container may request: '512Mi', '4Gi', '1G' or plain bytes."""
    text = _text(value)
    return text is not None and bool(_MEMORY.match(text))


def k8s_resources_errors(resources: Any, name: str) -> list[str]:
    """List what is wrong in a container resources dict ({requests: {cpu, memory}, limits: {...}}).

    name is the variable the dict came from, so every message names the variable to fix.
    An empty list means the dict is valid.
    """
    if resources is None:
        return []
    if not isinstance(resources, dict):
        return [f"{name} must be a dict with 'requests' and/or 'limits', got {resources!r}"]
    errors = []
    for section, amounts in resources.items():
        if section not in ("requests", "limits"):
            errors.append(f"{name}.{section} is not a resources section (use requests or limits)")
            continue
        if not isinstance(amounts, dict):
            errors.append(f"{name}.{section} must be a dict of resource: quantity")
            continue
        for resource, amount in amounts.items():
            checker = {"cpu": k8s_cpu_ok, "memory": k8s_memory_ok}.get(resource, k8s_quantity_ok)
            if not checker(amount):
                errors.append(
                    f"{name}.{section}.{resource} = {amount!r} is not a valid Kubernetes {resource} quantity"
                    + (" (e.g. '250m' or '1')" if resource == "cpu" else "")
                    + (" (e.g. '256Mi' or '1Gi')" if resource == "memory" else "")
                )
    return errors


def redact_secret(obj: Any, marker: str = REDACTED) -> Any:
    """Return a copy of a Kubernetes object whose Secret values are replaced by a marker.

    Objects that are not Secrets are returned unchanged. Keys are kept so a reader (and the
    validator) still sees the Secret's shape.
    """
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return obj
    redacted = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        values = redacted.get(field)
        if isinstance(values, dict):
            redacted[field] = {key: marker for key in values}
    return redacted


def render_file_names(objects: list[dict[str, Any]], stage: str) -> list[str]:
    """File names for rendered objects, in apply order: <stage>-<NN>-<kind>-<name>.yaml (NN from 01)."""
    names = []
    for number, obj in enumerate(objects, start=1):
        kind = str(obj.get("kind", "unknown")).lower()
        name = str(obj.get("metadata", {}).get("name", "unnamed"))
        names.append(f"{stage}-{number:02d}-{kind}-{name}.yaml")
    return names


def render_pending(objects: list[dict[str, Any]], names: list[str], directory: str) -> list[dict[str, str]]:
    """The rendered files whose content differs from what is on disk, as [{name, content}].

    Content is each object with Secret values redacted, dumped like ``to_nice_yaml(indent=2)``
    (author's key order kept). Render mode copies only these files, so an unchanged render makes
    no module call and reports no change.
    """
    from ansible.plugins.filter.core import to_nice_yaml  # imported late: only Ansible runs filters

    pending = []
    for obj, name in zip(objects, names, strict=True):
        content = to_nice_yaml(redact_secret(obj), indent=2, width=4096, sort_keys=False)
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as existing:
                if existing.read() == content:
                    continue
        except OSError:
            pass
        pending.append({"name": name, "content": content})
    return pending


def pending_files(files: list[dict[str, str]], directory: str) -> list[dict[str, str]]:
    """The [{name, content}] entries whose file in directory is missing or has other content."""
    pending = []
    for entry in files:
        try:
            with open(os.path.join(directory, entry["name"]), encoding="utf-8") as existing:
                if existing.read() == entry["content"]:
                    continue
        except OSError:
            pass
        pending.append(entry)
    return pending


class FilterModule:
    """Jinja2 filters of the jobstack collection."""

    def filters(self) -> dict[str, Any]:
        return {
            "k8s_quantity_ok": k8s_quantity_ok,
            "k8s_cpu_ok": k8s_cpu_ok,
            "k8s_memory_ok": k8s_memory_ok,
            "k8s_resources_errors": k8s_resources_errors,
            "redact_secret": redact_secret,
            "render_file_names": render_file_names,
            "render_pending": render_pending,
            "pending_files": pending_files,
        }
