"""Role variables: defaults and argument specs agree, and every name carries its role's prefix.

This also stands in for ansible-lint's var-naming[no-role-prefix], which .ansible-lint skips because
it cannot handle internal roles whose names start with an underscore.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

ROLES = sorted(path for path in (REPO_ROOT / "roles").iterdir() if (path / "tasks").is_dir())
PUBLIC_ROLES = [role for role in ROLES if not role.name.startswith("_")]


def load(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


def prefix_ok(name: str, role: str) -> bool:
    """role_x, _role_x, __role_x, or a project-wide jobstack_x (docs/contract.md, "Ansible")."""
    bare = role.lstrip("_")
    return bool(re.match(rf"^_{{0,2}}{re.escape(bare)}_", name)) or name.startswith("jobstack_")


def test_project_wide_defaults_and_the_preflight_entry_point_list_the_same_variables():
    defaults = load(REPO_ROOT / "roles" / "_common" / "defaults" / "main.yml")
    options = load(REPO_ROOT / "roles" / "_common" / "meta" / "argument_specs.yml")["argument_specs"]["preflight"][
        "options"
    ]
    required = {name for name, option in options.items() if option.get("required")}
    assert sorted(defaults) == sorted(set(options) - required)
    assert all(name.startswith("jobstack_") for name in options)


@pytest.mark.parametrize("role", PUBLIC_ROLES, ids=lambda role: role.name)
def test_defaults_and_argument_specs_list_the_same_variables(role):
    defaults = load(role / "defaults" / "main.yml") or {}
    specs = load(role / "meta" / "argument_specs.yml")
    assert specs, f"{role.name}: meta/argument_specs.yml is missing"
    options = specs["argument_specs"]["main"].get("options") or {}
    assert sorted(defaults) == sorted(options), (
        f"{role.name}: only in defaults {sorted(set(defaults) - set(options))}, "
        f"only in argument_specs {sorted(set(options) - set(defaults))}"
    )
    for name, option in options.items():
        assert option.get("description"), f"{role.name}: {name} has no description"
        assert option.get("type"), f"{role.name}: {name} has no type"


@pytest.mark.parametrize("role", PUBLIC_ROLES, ids=lambda role: role.name)
def test_public_variables_carry_the_role_prefix(role):
    defaults = load(role / "defaults" / "main.yml") or {}
    wrong = [name for name in defaults if not name.startswith(f"{role.name}_")]
    assert not wrong, f"{role.name}: defaults without the prefix {role.name}_: {wrong}"


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_facts_and_registered_results_carry_the_role_prefix(role):
    wrong = []
    internal = load(role / "vars" / "main.yml") or {}
    wrong += [f"vars/main.yml: {name}" for name in internal if not prefix_ok(name, role.name)]
    for path in sorted((role / "tasks").glob("*.yml")):
        text = path.read_text()
        for name in re.findall(r"^\s*register:\s*(\S+)", text, flags=re.MULTILINE):
            if not prefix_ok(name, role.name):
                wrong.append(f"{path.name}: register {name}")
        for block in re.findall(r"ansible\.builtin\.set_fact:\n((?:\s{4,}\S.*\n)+)", text):
            indent = len(block) - len(block.lstrip(" "))
            for name in re.findall(rf"^ {{{indent}}}([A-Za-z_]\w*):", block, flags=re.MULTILINE):
                if name not in ("cacheable",) and not prefix_ok(name, role.name):
                    wrong.append(f"{path.name}: set_fact {name}")
    assert not wrong, f"{role.name}: names without the role prefix: {wrong}"
