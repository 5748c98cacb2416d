"""The day-2 playbooks without a cluster: the drill's refusals, the drift report's refusal, their layout,
the drift report's dry run (action deploy_dry_run with callback drift_record) on a real ansible-playbook run,
and the comparison and drill figures on recorded data. The Docker target runs both for real in molecule
scenario operations."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from conftest import BIN, REPO_ROOT, ansible_playbook
from test_structure import MAX_HOPS, module_calls

OPERATIONS_PLAYBOOKS = [REPO_ROOT / "playbooks" / "drift.yml", REPO_ROOT / "playbooks" / "drill.yml"]


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


drift_report = load_script(REPO_ROOT / "roles" / "drift" / "files" / "drift_report.py")
drill_client = load_script(REPO_ROOT / "roles" / "drill" / "files" / "drill_client.py")


@pytest.mark.parametrize("playbook", OPERATIONS_PLAYBOOKS, ids=lambda path: path.name)
def test_every_module_call_of_the_operations_playbooks_is_at_most_four_hops_away(playbook):
    calls = module_calls(playbook, 0, [str(playbook.relative_to(REPO_ROOT))])
    assert any(module == "kubernetes.core.k8s_info" for _, _, module in calls)
    assert any(module.startswith("community.docker.") for _, _, module in calls)
    too_deep = [(hops, " -> ".join(trail), module) for hops, trail, module in calls if hops > MAX_HOPS]
    assert not too_deep, too_deep




# The drill's refusals, each stopped in its preflight (--tags drill_preflight) before anything is contacted.
def drill(run_playbook, tmp_path, inventory: str, *args: str):
    return run_playbook(
        "playbooks/drill.yml", inventory, "--tags", "drill_preflight", "-e", f"drill_report_dir={tmp_path}", *args
    )


def test_the_drill_refuses_more_than_one_cluster(run_playbook, tmp_path):
    run = drill(run_playbook, tmp_path, "production", "-e", "drill_confirm=prod-eu-west-1")
    assert run.returncode != 0
    assert "runs against one cluster at a time, but this run selects 2" in run.output
    assert "add --limit <cluster>" in run.output


def test_the_drill_refuses_an_environment_that_does_not_allow_drills(run_playbook, tmp_path):
    run = drill(run_playbook, tmp_path, "production", "--limit", "prod-eu-west-1")
    assert run.returncode != 0
    assert "drill_allowed is false for production" in run.output
    assert "-e drill_confirm=prod-eu-west-1" in run.output


def test_the_drill_refuses_a_confirmation_that_names_another_cluster(run_playbook, tmp_path):
    run = drill(run_playbook, tmp_path, "production", "--limit", "prod-eu-west-1", "-e", "drill_confirm=yes")
    assert run.returncode != 0
    assert 'drill_confirm is "yes", not the cluster name' in run.output


def test_the_drill_runs_where_confirmed_for_that_cluster_or_allowed(run_playbook, tmp_path):
    confirmed = drill(
        run_playbook, tmp_path, "production", "--limit", "prod-us-east-1", "-e", "drill_confirm=prod-us-east-1"
    )
    assert confirmed.returncode == 0, confirmed.output[-3000:]
    assert "Check that the drill targets exactly one cluster" in " ".join(confirmed.task_names())
    allowed = drill(run_playbook, tmp_path, "local")
    assert allowed.returncode == 0, allowed.output[-3000:]


def test_the_drill_refuses_faults_outside_the_load(run_playbook, tmp_path):
    run = drill(run_playbook, tmp_path, "local", "-e", "drill_duration=10")
    assert run.returncode != 0
    assert "The faults must fall inside the load" in run.output


def test_the_drift_report_refuses_render_mode(run_playbook):
    run = run_playbook("playbooks/drift.yml", "dev", "--tags", "drift_preflight", "-e", "render_only=true")
    assert run.returncode != 0
    assert "the drift report compares running clusters; drop -e render_only=true" in run.output


def test_the_dry_run_is_check_mode_with_this_runs_variables_and_records_each_result(ansible_env, tmp_path):
    """A stand-in deploy playbook: the dry run must see this run's -e, change nothing, and record the diff
    of what would change, the described object, and nothing of a no_log task."""
    target = tmp_path / "deployed.txt"
    target.write_text("running\n")
    deploy = tmp_path / "deploy.yml"
    deploy.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Stand-in deploy",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Write the deployed file",
                            "ansible.builtin.copy": {"content": "{{ wanted }}\n", "dest": str(target), "mode": "0644"},
                        },
                        {"name": "Secret step", "ansible.builtin.debug": {"msg": "s3cret"}, "no_log": True},
                        {
                            "name": "Describe a container",
                            "community.docker.docker_container": {"name": "ops-test-never-created", "image": "x"},
                            "when": False,
                        },
                    ],
                }
            ]
        )
    )
    caller = tmp_path / "caller.yml"
    record, log = tmp_path / "out" / "records.jsonl", tmp_path / "out" / "dry-run.log"
    caller.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Call the dry run",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Dry run",
                            "jobstack.deploy.deploy_dry_run": {
                                "playbook": str(deploy),
                                "limit": "localhost",
                                "record": str(record),
                                "log": str(log),
                            },
                            "register": "dry_run",
                        },
                        {
                            "name": "Keep the result",
                            "ansible.builtin.copy": {
                                "content": "{{ dry_run | to_json }}",
                                "dest": str(tmp_path / "result.json"),
                                "mode": "0644",
                            },
                        },
                    ],
                }
            ]
        )
    )
    python = f"ansible_python_interpreter={BIN / 'python'}"
    run = ansible_playbook(
        ansible_env, "-i", "localhost,", "-c", "local", "-e", python, "-e", "wanted=deployed", str(caller)
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert target.read_text() == "running\n", "the dry run changed the deployed file"
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["rc"] == 0 and result["changed"] is False
    records = {entry["task"]: entry for entry in result["records"]}
    written = records["Write the deployed file"]
    assert written["changed"] and written["check_mode"]
    diffs = written["diff"] if isinstance(written["diff"], list) else [written["diff"]]
    assert {"before": "running\n", "after": "deployed\n"} in [
        {"before": entry.get("before"), "after": entry.get("after")} for entry in diffs
    ]
    assert records["Secret step"]["censored"] and "s3cret" not in json.dumps(records["Secret step"])
    assert "Describe a container" not in records
    assert "--check" in log.read_text() or "PLAY RECAP" in log.read_text()


def test_the_dry_run_failing_says_so_with_its_output(ansible_env, tmp_path):
    deploy = tmp_path / "deploy.yml"
    deploy.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.fail": {"msg": "broken inventory"}}],
                }
            ]
        )
    )
    caller = tmp_path / "caller.yml"
    args = {
        "playbook": str(deploy),
        "limit": "localhost",
        "record": str(tmp_path / "r.jsonl"),
        "log": str(tmp_path / "l"),
    }
    caller.write_text(
        yaml.safe_dump(
            [{"hosts": "localhost", "gather_facts": False, "tasks": [{"jobstack.deploy.deploy_dry_run": args}]}]
        )
    )
    run = ansible_playbook(
        ansible_env,
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={BIN / 'python'}",
        str(caller),
    )
    assert run.returncode != 0
    assert "failed with rc 2, so nothing could be compared" in run.stdout
    assert "broken inventory" in run.stdout


# The comparison, on records as the callback writes them (molecule scenario operations runs it for real).
def record(task: str, changed: bool, obj: dict | None, diff: dict | None = None, censored: bool = False) -> dict:
    return {"task": task, "role": "_service", "changed": changed, "object": obj, "diff": diff, "censored": censored}


def container(name: str, state: str = "healthy") -> dict:
    return {"type": "container", "name": name, "state": state}


def test_the_comparison_names_what_differs_is_missing_and_is_extra():
    records = [
        record(
            "run",
            True,
            container("ops-engine-1"),
            {
                "before": {"cpus": 0.25, "restart_policy": "no"},
                "after": {"cpus": 0.5, "restart_policy": "unless-stopped"},
            },
        ),
        record(
            "run", True, container("ops-user-interface-1"), {"before": {"exists": False}, "after": {"exists": True}}
        ),
        record("run", False, container("ops-engine-2")),
        record("remove", True, container("ops-engine-3", "absent")),
        record("broker", True, None, censored=True),
        record("network", False, {"type": "network", "name": "ops", "state": "present"}),
    ]
    observed = {
        "containers": [
            {"Names": [f"/{name}"]}
            for name in ("ops-engine-1", "ops-engine-2", "ops-engine-3", "ops-rabbitmq", "ops-stray")
        ],
        "networks": [{"Name": "ops"}],
        "volumes": [],
    }
    report = drift_report.compare(records, observed, hidden=["ops-rabbitmq"])
    assert report["drifted"]
    assert report["differ"] == [
        {
            "object": "container/ops-engine-1",
            "task": "run",
            "role": "_service",
            "changes": [
                {"field": "cpus", "running": 0.25, "deployed": 0.5},
                {"field": "restart_policy", "running": "no", "deployed": "unless-stopped"},
            ],
        }
    ]
    assert [item["object"] for item in report["missing"]] == ["container/ops-user-interface-1"]
    assert [item["object"] for item in report["extra"]] == ["container/ops-engine-3", "container/ops-stray"]
    assert report["other"] == [
        {"task": "broker", "role": "_service", "why": "would change; details hidden (the task is no_log)"}
    ]


def test_the_comparison_diffs_kubernetes_objects_field_by_field_and_ignores_server_fields():
    deployment = {
        "type": "kubernetes",
        "api_version": "apps/v1",
        "kind": "Deployment",
        "namespace": "jobstack",
        "name": "engine",
        "state": "present",
    }
    before = {"metadata": {"name": "engine", "resourceVersion": "1", "managedFields": [1]}, "spec": {"replicas": 1}}
    after = {"metadata": {"name": "engine", "resourceVersion": "2", "managedFields": [2]}, "spec": {"replicas": 3}}
    records = [record("apply", True, deployment, {"before": before, "after": after})]
    observed = {
        "kubernetes": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "jobstack", "name": "engine"}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "jobstack", "name": "old"}},
        ]
    }
    report = drift_report.compare(records, observed, hidden=[])
    assert report["differ"][0]["object"] == "Deployment/jobstack/engine"
    assert report["differ"][0]["changes"] == [{"field": "spec.replicas", "running": 1, "deployed": 3}]
    assert [item["object"] for item in report["extra"]] == ["Deployment/jobstack/old"]


def test_the_report_exits_0_when_clean_and_3_when_drifted(tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    observed = tmp_path / "observed.json"
    observed.write_text(json.dumps({"containers": [{"Names": ["/ops-engine-1"]}]}))
    common = [
        "--observed",
        str(observed),
        "--cluster",
        "c",
        "--environment",
        "e",
        "--target",
        "docker",
        "--json-out",
        str(tmp_path / "r.json"),
        "--text-out",
        str(tmp_path / "r.txt"),
        "--records",
        str(records),
    ]
    records.write_text(json.dumps(record("run", False, container("ops-engine-1"))) + "\n")
    assert drift_report.main(common) == 0
    assert "no drift" in (tmp_path / "r.txt").read_text()
    records.write_text(
        json.dumps(record("run", True, container("ops-engine-1"), {"before": {"image": "a"}, "after": {"image": "b"}}))
        + "\n"
    )
    assert drift_report.main(common) == drift_report.DRIFTED
    assert "image: running a -> deployed b" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["drifted"] is True
    records.write_text("")
    assert drift_report.main(common) == 2


# The drill's figures, on a record as the client writes it.
def submission(
    seq: int, at: float, status: int, job_id: str | None, finished: float | None, result: str = "succeeded"
) -> dict:
    return {
        "seq": seq,
        "submitted_at": at,
        "http_status": status,
        "job_id": job_id,
        "error": None,
        "finished_at": finished,
        "status": result if finished else None,
        "engine": "e1" if finished else None,
        "first_result": {"engine": "e1"} if finished else None,
        "ran_twice": False,
    }


def test_the_drill_counts_refusals_apart_from_lost_jobs_and_measures_recovery():
    submissions = [
        submission(0, 100.0, 202, "a", 101.0),
        submission(1, 101.0, 503, None, None),  # refused during the outage: not lost
        submission(2, 102.0, 0, None, None),  # no answer at all: refused
        submission(3, 103.0, 202, "b", None),  # accepted and never finished: lost
        submission(4, 104.0, 202, "c", 110.0),
        submission(5, 105.0, 202, "c", 106.0),  # the same job id twice: a duplicate
    ]
    submissions[5]["ran_twice"] = True
    faults = [{"component": "engine", "target": "e1", "killed_at": 100.5, "recovered_at": 103.5}]
    figures = drill_client.figures({"submissions": submissions}, faults)
    assert (figures["submitted"], figures["accepted"], figures["refused"], figures["errors"]) == (6, 4, 2, 0)
    assert figures["lost"] == 1 and figures["lost_job_ids"] == ["b"]
    assert figures["duplicates"] == 2
    assert figures["worst_latency_seconds"] == 6.0
    assert figures["recovery_seconds"] == 3.5
    assert figures["faults"][0]["back_after_seconds"] == 3.0


def test_the_drill_reads_when_a_docker_container_was_back_from_its_healthchecks():
    state = {
        "Running": True,
        "StartedAt": "2026-01-01T00:00:05.123456789Z",
        "Health": {
            "Log": [
                {"End": "2026-01-01T00:00:01.0Z", "ExitCode": 0},
                {"End": "2026-01-01T00:00:07.5Z", "ExitCode": 1},
                {"End": "2026-01-01T00:00:12.5Z", "ExitCode": 0},
            ]
        },
    }
    killed = drill_client.epoch("2026-01-01T00:00:02.5Z")
    assert drill_client.back_at({"docker_state": state}) - killed == pytest.approx(10.0)
