#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests strictly, offline.

Render mode (``ansible-playbook site.yml -i inventories/<env> -e render_only=true``) writes one
file per object under ``rendered/<env>/<cluster>/`` plus ``render-info.json``, which records the
Kubernetes version the cluster runs. This tool checks every ``*.yaml`` file there:

* built-in kinds against the Kubernetes OpenAPI schema of that version (kubernetes-validate,
  strict: unknown fields are errors);
* custom resources against the ``openAPIV3Schema`` of their CustomResourceDefinition, made
  strict: every object schema rejects fields it does not declare, except where the CRD says
  ``x-kubernetes-preserve-unknown-fields`` (that is what the API server would silently prune);
* an object whose kind neither knows is an error (kubernetes-validate alone would pass it).

CRDs are read from ``tools/crds/`` only: the repository carries its own unmodified copies (source,
version and sha256 of each in ``tools/crds/README.md``), so validation needs nothing outside it.
Exit status: 0 all valid, 1 invalid manifests, 2 usage or setup error.

Usage: tools/validate_manifests.py [PATH ...] [--kubernetes-version X.Y.Z]
PATH is a render directory, a tree of them (default: rendered/) or single manifest files.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# The vendored CRDs (tools/crds/README.md); never a directory outside the repository.
CRDS_DIR = Path(__file__).resolve().parent / "crds"
RENDER_INFO = "render-info.json"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# What the API server accepts in metadata of a custom resource (CRD schemas leave it open).
OBJECT_META_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
}


@dataclass
class Report:
    """Outcome of a run: how many objects were checked, and one line per problem."""

    checked: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")


def strict_schema(schema: Any) -> Any:
    """Copy of an OpenAPI v3 schema in which objects reject undeclared fields.

    A node that declares ``properties`` but neither ``additionalProperties`` nor
    ``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false``; so does an
    object node that declares nothing at all (the API server would prune every field of it).
    ``nullable: true`` becomes a JSON-schema null type.
    """
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    node = {key: strict_schema(value) for key, value in schema.items()}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and not preserve and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


class CrdCatalog:
    """The custom resource schemas of every CRD file in a directory, by (apiVersion, kind)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(directory.glob("*.y*ml")):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    self._add(doc)

    def _add(self, crd: dict[str, Any]) -> None:
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is None:
                continue
            schema = strict_schema(copy.deepcopy(schema))
            # apiVersion, kind and metadata are checked here rather than by the CRD schema.
            schema.setdefault("properties", {})
            schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {
                "type": "object",
                "required": ["name"],
                "properties": {name: {} for name in OBJECT_META_FIELDS},
                "additionalProperties": False,
            }
            schema["properties"].pop("status", None)
            schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
            self.schemas[(f"{group}/{version['name']}", kind)] = schema

    def schema_for(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return self.schemas.get((str(obj.get("apiVersion")), str(obj.get("kind"))))


def describe(error: jsonschema.ValidationError) -> str:
    """One line: where in the object, and what is wrong."""
    location = ".".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{location}: {error.message}"


def validate_object(obj: Any, version: str, crds: CrdCatalog) -> list[str]:
    """Problems of one object (empty when valid)."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    schema = crds.schema_for(obj)
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        return [describe(error) for error in sorted(validator.iter_errors(obj), key=str)]
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [describe(error)]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"unknown kind {obj['kind']} ({obj['apiVersion']}): neither Kubernetes {version} "
            f"nor a CRD in {crds.directory} defines it"
        ]
    return []


def manifest_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        else:
            yield from sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())


def kubernetes_version_for(path: Path, override: str | None) -> str | None:
    """The version in the nearest render-info.json above the file, unless overridden."""
    if override:
        return override
    for directory in path.resolve().parents:
        info = directory / RENDER_INFO
        if info.is_file():
            return str(json.loads(info.read_text(encoding="utf-8"))["kubernetes_version"])
    return None


def validate_paths(paths: list[Path], crds: CrdCatalog, version_override: str | None = None) -> Report:
    report = Report()
    files = list(manifest_files(paths))
    if not files:
        report.fail(", ".join(map(str, paths)), "no manifest files found (render first: -e render_only=true)")
    for path in files:
        version = kubernetes_version_for(path, version_override)
        if version is None:
            report.fail(str(path), f"no {RENDER_INFO} above it and no --kubernetes-version given")
            continue
        try:
            documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
        except yaml.YAMLError as error:
            report.fail(str(path), f"invalid YAML: {error}")
            continue
        for index, obj in enumerate(documents):
            report.checked += 1
            where = str(path) if len(documents) == 1 else f"{path}[{index}]"
            for problem in validate_object(obj, version, crds):
                report.fail(where, problem)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[REPO_ROOT / "rendered"],
        help="render directories, trees of them, or manifest files (default: rendered/)",
    )
    parser.add_argument("--kubernetes-version", help="validate against this version instead of render-info.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    crds = CrdCatalog(CRDS_DIR)
    if not crds.schemas:
        print(
            f"validate_manifests: no CustomResourceDefinition in {CRDS_DIR} (see tools/crds/README.md)", file=sys.stderr
        )
        return 2
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"validate_manifests: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = validate_paths(args.paths, crds, args.kubernetes_version)
    for line in report.errors:
        print(f"INVALID {line}")
    print(f"validate_manifests: {report.checked} objects checked, {len(report.errors)} problems")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
