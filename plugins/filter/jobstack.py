"""Filters of the jobstack.deploy collection: checks of Kubernetes resource quantities."""

from __future__ import annotations

import re
from typing import Any

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


def k8s_resources_errors(resources: Any, name: str, complete: bool = False) -> list[str]:
    """List what is wrong in a container resources dict ({requests: {cpu, memory}, limits: {...}}).

    name is the variable the dict came from, so every message names the variable to fix. With
    complete, requests and limits of both cpu and memory must be set (what the services need, so that
    the scheduler and the Docker target have a number to work with). An empty list means the dict is valid.
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
    if complete:
        for section in ("requests", "limits"):
            amounts = resources.get(section)
            for resource in ("cpu", "memory"):
                if not isinstance(amounts, dict) or resource not in amounts:
                    errors.append(f"{name}.{section}.{resource} is missing (set requests and limits of cpu and memory)")
    return errors


class FilterModule:
    """Jinja2 filters of the jobstack collection."""

    def filters(self) -> dict[str, Any]:
        return {
            "k8s_quantity_ok": k8s_quantity_ok,
            "k8s_cpu_ok": k8s_cpu_ok,
            "k8s_memory_ok": k8s_memory_ok,
            "k8s_resources_errors": k8s_resources_errors,
        }
