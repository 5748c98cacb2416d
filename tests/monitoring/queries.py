"""The PromQL of the monitoring files, and the metric names it reads.

`metric_names` is a small tokenizer, not a PromQL parser: it drops string literals, label
matchers `{...}`, ranges and subqueries `[...]`, and the label lists of `by`, `without`, `on`,
`ignoring`, `group_left` and `group_right`; every identifier left that is neither a keyword nor
followed by `(` (a function) is a metric name. It refuses what it cannot read (`__name__`
matchers, unbalanced brackets) instead of guessing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "monitoring" / "files" / "jobstack-alerts.yml"
DASHBOARD = ROOT / "roles" / "monitoring" / "files" / "jobstack-dashboard.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Aggregation operators and keywords: identifiers that are never metric names.
AGGREGATIONS = ("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk")
OPERATORS = ("by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset")
KEYWORDS = frozenset((*AGGREGATIONS, *OPERATORS, "quantile", "limitk", "limit_ratio", "atan2", "inf", "nan"))
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|[0-9][A-Za-z0-9_.]*|\S")
# Grafana's templating query for a variable: label_values(<series selector>, <label>).
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.DOTALL)


def drop_brackets(text: str, opening: str, closing: str) -> str:
    """Remove every `opening ... closing` span (not nested in this grammar), refusing unbalanced ones."""
    out, depth = [], 0
    for char in text:
        if char == opening:
            depth += 1
            if depth > 1:
                raise ValueError(f"nested {opening!r} in {text!r}")
        elif char == closing:
            if depth == 0:
                raise ValueError(f"unbalanced {closing!r} in {text!r}")
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(char)
    if depth:
        raise ValueError(f"unclosed {opening!r} in {text!r}")
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    if "__name__" in expr:
        raise ValueError(f"a __name__ matcher hides the metric name from this tokenizer: {expr!r}")
    text = STRING.sub(" ", expr)
    text = drop_brackets(text, "{", "}")
    text = drop_brackets(text, "[", "]")
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth:
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    text = LABEL_LIST.sub(" ", text)
    tokens = TOKEN.findall(text)
    names = set()
    for index, token in enumerate(tokens):
        if not (token[0].isalpha() or token[0] in "_:") or token in KEYWORDS:
            continue
        if index + 1 < len(tokens) and tokens[index + 1] == "(":
            continue  # a function call
        names.add(token)
    return names


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of the rules file, in file order."""
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(board: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every templating query of the dashboard."""
    board = dashboard() if board is None else board
    queries = [
        (f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        definition = variable["query"]["query"]
        match = LABEL_VALUES.match(definition)
        if match is None:
            raise ValueError(f"variable {variable['name']}: not a label_values(...) query: {definition!r}")
        queries.append((f"variable {variable['name']}", match["selector"]))
    return queries


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Debian's promtool (package prometheus), which CI installs with the other test tools."""
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=300, check=False)
