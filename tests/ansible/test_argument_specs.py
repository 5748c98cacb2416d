"""One argument-spec mechanism: every entry point of every role is validated when it is included, under the
name the callers use, and refuses a value of the wrong type before any of its tasks runs."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from conftest import BIN, REPO_ROOT, ansible_playbook

ROLES = sorted(path for path in (REPO_ROOT / "roles").iterdir() if (path / "meta" / "argument_specs.yml").is_file())
# A value that each type refuses (strings are refused through their choices).
WRONG = {
    "int": "not-a-number",
    "bool": "perhaps",
    "dict": "not-a-dict",
    "list": {"not": "a list"},
    "float": "not-a-number",
}


def entry_points() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for role in ROLES:
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry, spec in specs.items():
            found.append((role.name, entry, spec.get("options") or {}))
    return found


def wrong_value(options: dict[str, Any]) -> tuple[str, Any]:
    """An option of the entry point and a value its spec refuses."""
    for name, option in options.items():
        if option.get("type") in WRONG:
            return name, WRONG[option["type"]]
    for name, option in options.items():
        if option.get("choices"):
            return name, "not-one-of-the-choices"
    raise AssertionError(f"no option whose type or choices can be broken: {sorted(options)}")


def test_every_entry_point_has_its_task_file_and_every_task_file_called_from_outside_has_an_entry_point():
    for role, entry, _ in entry_points():
        assert (REPO_ROOT / "roles" / role / "tasks" / f"{entry}.yml").is_file(), (
            f"{role}: entry point {entry} has no tasks/{entry}.yml"
        )
    declared = {(role, entry) for role, entry, _ in entry_points()}
    sources = [
        *REPO_ROOT.glob("playbooks/*.yml"),
        *REPO_ROOT.glob("roles/*/tasks/*.yml"),
        *REPO_ROOT.glob("molecule/*/*.yml"),
    ]
    sources += [*REPO_ROOT.glob("molecule/*/*/*.yml")]
    calls = []
    for path in sources:
        text = path.read_text()
        for role, rest in re.findall(
            r"name: jobstack\.deploy\.(\w+)\n((?:\s+(?:tasks_from|apply|tags|public):.*\n)*)", text
        ):
            tasks_from = re.search(r"tasks_from: (\S+)", rest)
            calls.append((path, role, tasks_from.group(1) if tasks_from else "main"))
    assert calls
    for path, role, entry in calls:
        entries = ["kubernetes", "docker"] if entry == '"{{' else [entry]
        for name in entries:
            assert (role, name) in declared, (
                f"{path.relative_to(REPO_ROOT)} calls {role} entry point {name}, which has no spec"
            )


def test_every_entry_point_with_options_refuses_a_wrong_type_before_its_tasks_run(ansible_env, tmp_path):
    cases = [(role, entry, *wrong_value(options)) for role, entry, options in entry_points() if options]
    # Entry points without options are the mains of the internal roles (they refuse to run at all).
    assert {(role, entry) for role, entry, options in entry_points() if not options} == {
        ("_common", "main"),
        ("_service", "main"),
    }
    tasks: list[dict[str, Any]] = []
    for role, entry, option, value in cases:
        tasks.append(
            {
                "name": f"Entry point {role} {entry}",
                "vars": {"__entry": f"{role} {entry}"},
                "block": [
                    {
                        "name": f"Import {role} {entry}",
                        "ansible.builtin.import_role": {"name": f"jobstack.deploy.{role}", "tasks_from": entry},
                        "vars": {option: value},
                    },
                    {
                        "name": "Not refused",
                        "ansible.builtin.set_fact": {
                            "outcomes": "{{ outcomes + [{'entry': __entry, 'refused': false}] }}"
                        },
                    },
                ],
                "rescue": [
                    {
                        "name": "Refused",
                        "ansible.builtin.set_fact": {
                            "outcomes": "{{ outcomes + [{'entry': __entry, 'refused': true,"
                            " 'task': ansible_failed_task.name, 'msg': ansible_failed_result.msg | default('')}] }}"
                        },
                    }
                ],
            }
        )
    tasks.append(
        {
            "name": "Write the outcomes",
            "ansible.builtin.copy": {
                "content": "{{ outcomes | to_json }}",
                "dest": str(tmp_path / "outcomes.json"),
                "mode": "0644",
            },
        }
    )
    playbook = tmp_path / "entry_points.yml"
    play = {
        "name": "Every entry point with a wrong type",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "outcomes": [],
            "jobstack_environment": "test",
            "jobstack_render_root": str(tmp_path / "rendered"),
            "ansible_python_interpreter": str(BIN / "python"),
        },
        "tasks": tasks,
    }
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    result = ansible_playbook(ansible_env, str(playbook), "-c", "local")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    outcomes = {item["entry"]: item for item in json.loads((tmp_path / "outcomes.json").read_text())}
    assert len(outcomes) == len(cases)
    for role, entry, option, _ in cases:
        outcome = outcomes[f"{role} {entry}"]
        assert outcome["refused"], f"{role} {entry} accepted a wrong {option}"
        assert outcome["task"].startswith(f"Validating arguments against arg spec '{entry}'"), outcome
        assert option in outcome["msg"], outcome
