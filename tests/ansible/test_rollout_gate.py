"""The region gate, the rollback, the drain and the promotion as the playbooks wire them, without a cluster:
the order of operations in site.yml and in the apply step, the playbooks' depth, the drain's Shovel as
render mode writes it (validated against the CRD, checked by the policy check, no Secret), and each
refusal with its message. The runs on real containers are molecule scenario rehearsal."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, ansible_playbook, validate
from test_structure import MAX_HOPS, module_calls

ROLLOUT = "Rollout - broker, apps and smoke test, one cluster at a time"


def rollout_play() -> dict:
    plays = yaml.safe_load((REPO_ROOT / "playbooks" / "site.yml").read_text())
    return next(play for play in plays if play["name"] == ROLLOUT)


def test_every_step_of_a_clusters_rollout_is_under_the_rollback():
    play = rollout_play()
    guarded = next(task for task in play["tasks"] if "block" in task)
    names = [task["name"] for task in guarded["block"]]
    # Broker, apps, smoke test, then the record: the record is written only after the gate and smoke test.
    assert names[0].startswith("Broker - ") and names[-1].startswith("Release - record")
    assert names.index("Apps - the engine.") < names.index("Apps - the user interface.")
    assert names[-2].startswith("Smoke test - ")
    [rescue] = guarded["rescue"]
    assert rescue["ansible.builtin.include_role"] == {
        "name": "jobstack.deploy.release",
        "tasks_from": "rollback",
        "apply": {"tags": ["always"]},
    }
    # A rollback follows whatever stage failed, whichever tags the run selected.
    assert rescue["tags"] == ["always"]
    # One region at a time, and the play stops at the first failed region.
    assert play["serial"] == 1 and play["max_fail_percentage"] == 0


def test_the_rollback_ends_the_play_with_one_failure():
    tasks = yaml.safe_load((REPO_ROOT / "roles" / "release" / "tasks" / "rollback.yml").read_text())
    # A rescue that ended without failing would let the next region start.
    assert list(tasks[-1]) == ["name", "ansible.builtin.fail"]
    assert "rollback_message" in tasks[-1]["ansible.builtin.fail"]["msg"]
    assert not any("ignore_errors" in task for task in tasks)


def test_deployments_are_waited_for_by_their_rollout_not_by_kubernetes_core_wait():
    tasks = yaml.safe_load((REPO_ROOT / "roles" / "_common" / "tasks" / "apply.yml").read_text())
    names = [task["name"] for task in tasks]
    apply = next(task for task in tasks if "kubernetes.core.k8s" in task)
    assert "item.1.kind != 'Deployment'" in apply["kubernetes.core.k8s"]["wait"]
    wait = next(task for task in tasks if task["name"].startswith("Wait for the rollout of each Deployment"))
    assert "jobstack.deploy.rollout_status" in wait["until"]
    assert names.index(wait["name"]) > names.index(apply["name"])
    check = next(task for task in tasks if task["name"].startswith("Check that each Deployment rolled out"))
    assert names.index(check["name"]) > names.index(wait["name"])


@pytest.mark.parametrize("playbook", ["drain.yml", "promote.yml"])
def test_the_drain_and_promote_playbooks_reach_every_module_within_four_steps(playbook):
    path = REPO_ROOT / "playbooks" / playbook
    calls = module_calls(path, 0, [str(path.relative_to(REPO_ROOT))])
    assert calls
    too_deep = [(hops, " -> ".join(trail), module) for hops, trail, module in calls if hops > MAX_HOPS]
    assert not too_deep, too_deep




def test_the_rehearsal_renders_two_regions_with_their_own_names(run_playbook, tmp_path):
    run = run_playbook("site.yml", "rehearsal", render_root=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    assert "would run jobstack-west-engine-1, jobstack-west-engine-2 from jobstack-engine:" in run.output
    assert "would run jobstack-east-engine-1, jobstack-east-engine-2 from jobstack-engine:" in run.output
    assert sorted(path.name for path in (tmp_path / "rehearsal").iterdir()) == ["docker-east", "docker-west"]


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            "jobstack_docker_prefix=same",
            "jobstack_docker_prefix 'same' of docker-west is also the prefix of docker-east",
        ),
        (
            "docker_broker_credentials_dir=/tmp/shared",
            "docker_broker_credentials_dir /tmp/shared of docker-west is also that of",
        ),
    ],
)
def test_two_regions_on_one_docker_engine_must_not_share_names_or_state(run_playbook, tmp_path, override, says):
    run = run_playbook("site.yml", "rehearsal", "--tags", "preflight", "-e", override, render_root=tmp_path)
    assert run.returncode != 0
    assert says in " ".join(run.output.split())


def test_the_gate_timeout_is_checked(run_playbook, tmp_path):
    run = run_playbook(
        "site.yml", "local", "--tags", "preflight", "-e", "jobstack_gate_timeout=3", render_root=tmp_path
    )
    assert run.returncode != 0
    assert "jobstack_gate_timeout must be at least 10 (seconds for a new replica to come up), got 3." in run.output


# -- the drain ------------------------------------------------------------------------------------


def drain_render(run_playbook, tmp_path: Path, *args: str):
    return run_playbook(
        "playbooks/drain.yml",
        "production",
        "-e",
        "drain_from=eu_west",
        "-e",
        "drain_to=us_east",
        *args,
        render_root=tmp_path,
    )


def test_render_mode_writes_the_drains_shovel_valid_against_its_crd_and_no_secret(run_playbook, tmp_path):
    run = drain_render(run_playbook, tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    # Beside the deploy's render, not in it.
    source = tmp_path / "production-drain" / "prod-eu-west-1"
    files = sorted(path.name for path in source.glob("*.yaml"))
    assert files == ["90-drain-01-shovel-jobstack-drain.yaml"], files
    shovel = yaml.safe_load((source / files[0]).read_text())
    assert shovel["kind"] == "Shovel"
    assert shovel["spec"]["srcQueue"] == "jobstack.jobs"
    assert (shovel["spec"]["destExchange"], shovel["spec"]["destExchangeKey"]) == ("job-exchange", "job")
    assert shovel["spec"]["uriSecret"] == {"name": "jobstack-drain-uris"}
    assert shovel["spec"]["ackMode"] == "on-confirm"
    # Only the source region is drained: the destination renders nothing.
    assert not list(tmp_path.glob("*/prod-us-east-1/*.yaml"))
    result = validate(source)
    assert result.returncode == 0, result.stdout + result.stderr
    # checkov has no policy for a Shovel (tools/policy_check.py reports nothing to check): the schema is the check.


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("-e", "drain_from=nowhere", "-e", "drain_to=us_east"), "drain_from must name a region of this inventory"),
        (
            ("-e", "drain_from=eu_west", "-e", "drain_to=eu_west"),
            "drain_from and drain_to must be two different regions",
        ),
        (("-e", "drain_from=eu_west", "-e", "drain_to=clusters"), "drain_to must name a region of this inventory"),
        (
            ("-e", "drain_from=eu_west", "-e", "drain_to=us_east", "-e", "render_only=false", "--check"),
            "drain_destination_amqp_host must say where the source cluster reaches the destination's broker",
        ),
    ],
)
def test_a_bad_drain_request_is_refused_before_anything_changes(ansible_env, vault_password_file, tmp_path, args, says):
    result = ansible_playbook(
        ansible_env,
        "-i",
        "inventories/production",
        "--vault-password-file",
        str(vault_password_file),
        "playbooks/drain.yml",
        "-e",
        f"jobstack_render_root={tmp_path}",
        "-e",
        "render_only=true",
        *args,
    )
    assert result.returncode != 0
    assert says in " ".join((result.stdout + result.stderr).split())
    assert "changed=0" in result.stdout
    assert not list(tmp_path.rglob("*.yaml"))


def test_a_drain_of_a_region_without_a_release_record_is_refused(ansible_env, tmp_path):
    # The rehearsal's regions on the Docker target, never deployed here: no record to drain from.
    env = {**ansible_env, "HOME": str(tmp_path)}
    result = ansible_playbook(
        env, "-i", "inventories/rehearsal", "playbooks/drain.yml", "-e", "drain_from=west", "-e", "drain_to=east"
    )
    assert result.returncode != 0
    text = " ".join(result.stdout.split())
    assert "Cluster docker-west has no release record (roles/release): deploy it with site.yml" in text
