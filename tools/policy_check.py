#!/usr/bin/env python3
"""Policy check: checkov over the rendered manifests and the services' Dockerfiles.

Settings and the justified skips live in .checkov.yaml. Any failed check fails this command.
Render first (``-e render_only=true`` for each inventory); the manifests are read from rendered/.

Usage: tools/policy_check.py [--rendered DIR] [--dockerfile PATH ...]
Exit status: 0 no failures, 1 failed checks, 2 nothing to check or checkov did not run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = REPO_ROOT / ".checkov.yaml"


def checkov_binary() -> str:
    """checkov next to this interpreter (the project venv), else on PATH."""
    beside = Path(sys.executable).parent / "checkov"
    return str(beside) if beside.exists() else (shutil.which("checkov") or "checkov")


def run_checkov(framework: str, targets: list[str]) -> list[dict[str, Any]]:
    """Run one checkov framework over targets; return its reports (one per framework)."""
    command = [checkov_binary(), "--config-file", str(CONFIG), "--framework", framework, "-o", "json", *targets]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    data = json.loads(result.stdout or "[]")
    return data if isinstance(data, list) else [data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rendered", type=Path, default=REPO_ROOT / "rendered")
    parser.add_argument(
        "--dockerfile", type=Path, action="append", help="Dockerfile to check (default: services/*/Dockerfile)"
    )
    args = parser.parse_args(argv)
    dockerfiles = args.dockerfile or sorted(REPO_ROOT.glob("services/*/Dockerfile"))
    if not args.rendered.is_dir() or not any(args.rendered.rglob("*.yaml")):
        print(f"policy_check: no rendered manifests in {args.rendered}; render the inventories first", file=sys.stderr)
        return 2
    if not dockerfiles:
        print("policy_check: no Dockerfile found under services/", file=sys.stderr)
        return 2
    # Files, not -d: checkov skips directories whose names start with a dot (e.g. molecule's ~/.ansible/tmp).
    manifests = sorted(args.rendered.rglob("*.yaml"))
    runs = [("kubernetes", [arg for path in manifests for arg in ("-f", str(path))])]
    runs.append(("dockerfile", [arg for path in dockerfiles for arg in ("-f", str(path))]))
    failed = 0
    for framework, targets in runs:
        try:
            reports = run_checkov(framework, targets)
        except (RuntimeError, json.JSONDecodeError) as error:
            print(f"policy_check: {error}", file=sys.stderr)
            return 2
        for report in reports:
            summary = report.get("summary", {})
            print(
                f"policy_check: {report.get('check_type', framework)}: {summary.get('passed', 0)} passed, "
                f"{summary.get('failed', 0)} failed, {summary.get('resource_count', 0)} resources"
            )
            for check in report.get("results", {}).get("failed_checks", []):
                failed += 1
                print(
                    f"FAILED {check['check_id']} {check['check_name']}: {check['resource']} "
                    f"({check['file_path']}:{check['file_line_range'][0]})"
                )
        if not reports or all(report.get("summary", {}).get("resource_count", 0) == 0 for report in reports):
            print(f"policy_check: checkov found nothing to check for {framework}", file=sys.stderr)
            return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
