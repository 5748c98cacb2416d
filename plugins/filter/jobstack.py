"""Filters of the jobstack.deploy collection: checks of Kubernetes resource quantities and sizes."""

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


_SUFFIX_BYTES = {
    **{suffix: 1024**power for power, suffix in enumerate(["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])},
    **{suffix: 1000**power for power, suffix in enumerate(["", "k", "M", "G", "T", "P", "E"]) if suffix},
}


def quantity_bytes(value: Any) -> int:
    """Bytes of a storage or memory quantity that k8s_memory_ok accepts ("4Gi" is 4 * 1024**3); 0 otherwise."""
    text = _text(value)
    if text is None or not _MEMORY.match(text):
        return 0
    number = re.match(r"^[0-9]+", text)
    assert number is not None
    return int(number.group(0)) * _SUFFIX_BYTES[text[number.end() :]]


def cpu_millicores(value: Any) -> int:
    """Millicores of a CPU amount that k8s_cpu_ok accepts ("2" is 2000, "250m" is 250); 0 otherwise."""
    text = _text(value)
    if text is None or not k8s_cpu_ok(text):
        return 0
    return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)


# RabbitMQ's information units (deps/rabbit_common/src/rabbit_resource_monitor_misc.erl, 3.13+): the
# "i" units are powers of 1024, the others (and the bare letters, as Kubernetes reads them) of 1000.
_RABBITMQ_SIZE = re.compile(r"^([0-9]+)([kKmMgGtTpP]?)(i?)([bB]?)$")


def rabbitmq_size_bytes(value: Any) -> int:
    """Bytes of a RabbitMQ absolute size such as disk_free_limit.absolute ("2GB", "512MiB", "1000000"); 0 if invalid."""
    text = _text(value)
    match = _RABBITMQ_SIZE.match(text or "")
    if text is None or match is None:
        return 0
    number, unit, binary, byte = match.groups()
    if (binary or byte) and not unit:
        return 0
    power = "kmgtp".index(unit.lower()) + 1 if unit else 0
    return int(number) * (1024 if binary else 1000) ** power


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
            "quantity_bytes": quantity_bytes,
            "cpu_millicores": cpu_millicores,
            "rabbitmq_size_bytes": rabbitmq_size_bytes,
        }
