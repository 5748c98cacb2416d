"""plugins/filter/release.py and drain.py: the region gate, the rollback decision and its message, the
drain's changes to a recorded release, without a cluster. The real runs are molecule scenario rehearsal."""

from __future__ import annotations

import copy
import hashlib
import sys

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import drain
import release

ENGINE_GOOD = {"image": "jobstack-engine:good", "image_id": "sha256:aa", "containers": [{"name": "west-engine-1"}]}
ENGINE_BAD = {"image": "jobstack-engine:bad", "image_id": "sha256:bb", "containers": [{"name": "west-engine-1"}]}
UI_GOOD = {"image": "jobstack-user-interface:good", "image_id": "sha256:cc", "containers": [{"name": "west-ui-1"}]}
RECORD = {
    "release": release.release_id({"engine": ENGINE_GOOD, "user_interface": UI_GOOD}),
    "recorded_at": "2030-01-02T03:04:05Z",
    "services": {"engine": ENGINE_GOOD, "user_interface": UI_GOOD},
}
HOSTS = ["docker-west", "docker-east", "docker-south"]
REGIONS = {"docker-west": "west-1", "docker-east": "east-1", "docker-south": "south-1"}


def deployment(generation=2, observed=2, spec=3, replicas=3, updated=3, ready=3, available=3, conditions=()):
    return {
        "metadata": {"name": "engine", "namespace": "jobstack", "generation": generation},
        "spec": {"replicas": spec},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": list(conditions),
        },
    }


# -- the gate: Deployments ------------------------------------------------------------------------


def test_a_rollout_is_complete_when_every_replica_is_updated_ready_and_available():
    assert release.rollout_status(deployment())["state"] == "complete"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        # Right after an update: the controller saw the new generation, the new ReplicaSet has no pod
        # yet, the old pods are all available. kubernetes.core's wait returns here; the gate must not.
        ({"updated": 0}, "0 of 3 replicas run the new template"),
        ({"observed": 1}, "has not yet seen generation 2"),
        ({"replicas": 4}, "1 old replicas are still running"),
        ({"available": 2}, "2 of 3 new replicas are ready and available"),
        ({"ready": 1}, "1 of 3 new replicas are ready and available"),
    ],
)
def test_a_rollout_with_old_pods_or_unready_new_ones_is_still_progressing(fields, says):
    status = release.rollout_status(deployment(**fields))
    assert status["state"] == "progressing"
    assert says in status["message"]


def test_a_rollout_past_its_progress_deadline_fails_at_once():
    stuck = deployment(
        updated=1, replicas=4, conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    )
    assert release.rollout_status(stuck)["state"] == "failed"


def test_a_missing_deployment_or_one_without_status_is_progressing():
    assert release.rollout_status(None)["state"] == "progressing"
    assert release.rollout_status({"metadata": {"generation": 1}})["state"] == "progressing"


def test_an_autoscaled_deployment_is_judged_against_its_live_replica_count():
    assert (
        release.rollout_status(deployment(spec=5, replicas=5, updated=5, ready=5, available=5))["state"] == "complete"
    )


def test_the_pods_of_a_failed_rollout_are_described_with_their_state_and_restarts():
    pods = [
        {
            "metadata": {"name": "engine-7d9c-x2p4f"},
            "status": {
                "containerStatuses": [
                    {
                        "name": "engine",
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "restartCount": 4,
                        "lastState": {"terminated": {"exitCode": 3}},
                    }
                ]
            },
        },
        {"metadata": {"name": "engine-7d9c-pending"}, "status": {"phase": "Pending"}},
    ]
    summary = release.pods_summary(pods)
    assert "engine-7d9c-x2p4f: engine waiting CrashLoopBackOff, 4 restarts, last exit code 3" in summary
    assert "engine-7d9c-pending: Pending, no container started" in summary
    assert release.pods_summary([]) == "none found"


# -- the gate: Docker containers ------------------------------------------------------------------


def container(status="running", health="healthy", restarts=0, restarting=False, exit_code=0, oom=False):
    state = {"Status": status, "Restarting": restarting, "ExitCode": exit_code, "OOMKilled": oom}
    if health is not None:
        state["Health"] = {"Status": health, "Log": [{"Output": "connection refused"}]}
    return {"exists": True, "container": {"Name": "/west-engine-1", "RestartCount": restarts, "State": state}}


def test_a_healthy_container_passes():
    assert release.container_gate(container())["state"] == "healthy"


def test_a_starting_container_is_waited_for_and_its_last_check_is_said():
    status = release.container_gate(container(health="starting"))
    assert status["state"] == "starting"
    assert "connection refused" in status["message"]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"status": "exited", "exit_code": 3, "health": "unhealthy"}, "exited with code 3"),
        # With a restart policy Docker starts it again and its health is back to starting: a wait on the
        # health alone would only time out.
        ({"restarts": 2, "health": "starting"}, "exits and restarts: 2 restart(s)"),
        ({"restarting": True, "restarts": 1, "exit_code": 3, "health": "unhealthy"}, "(exit code 3)"),
        ({"oom": True, "status": "exited"}, "OOMKilled"),
    ],
)
def test_a_container_that_exits_or_restarts_fails_the_gate_at_once(fields, says):
    status = release.container_gate(container(**fields))
    assert status["state"] == "failed"
    assert says in status["message"]


def test_restarts_before_the_container_was_started_do_not_count():
    assert release.container_gate(container(restarts=5), restarts_before=5)["state"] == "healthy"
    assert release.container_gate(container(restarts=6), restarts_before=5)["state"] == "failed"


def test_a_missing_container_fails():
    assert release.container_gate({"exists": False})["state"] == "failed"


# -- what is rolled back, and when ----------------------------------------------------------------


def test_only_the_services_this_run_changed_are_rolled_back():
    plan = release.rollback_plan({"engine": ENGINE_BAD, "user_interface": UI_GOOD}, RECORD)
    assert plan["rollback"] is True
    assert plan["services"] == ["engine"]
    assert "jobstack-engine:bad" in plan["from"]
    assert plan["to"].startswith(f"release {RECORD['release']} (engine jobstack-engine:good")
    assert "recorded 2030-01-02T03:04:05Z" in plan["to"]


def test_a_failure_in_the_engine_stage_rolls_back_the_engine_and_names_the_release_it_would_have_made():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD)
    assert plan["services"] == ["engine"]
    # The release that failed: the record with this run's engine over it (the user interface unchanged).
    assert plan["from"].startswith(
        "release "
        + release.release_id({"engine": ENGINE_BAD, "user_interface": UI_GOOD})
        + " (engine jobstack-engine:bad"
    )


def test_a_first_deploy_rolls_nothing_back_and_says_so():
    for record in (None, {}):
        plan = release.rollback_plan({"engine": ENGINE_BAD}, record)
        assert plan["rollback"] is False
        assert "No last good release is recorded for this cluster (first deploy)" in plan["reason"]


def test_rollback_false_keeps_the_failed_state_and_says_what_would_have_been_rolled_back():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD, rollback=False)
    assert plan["rollback"] is False
    assert plan["services"] == ["engine"]
    assert plan["reason"].startswith("With rollback=false the failed state is kept for debugging: engine")
    assert RECORD["release"] in plan["reason"]


def test_a_failure_before_the_services_changed_rolls_nothing_back():
    plan = release.rollback_plan({}, RECORD)
    assert plan["rollback"] is False
    assert "before the services were changed" in plan["reason"]


def test_a_failure_of_the_release_already_recorded_rolls_nothing_back():
    plan = release.rollback_plan(copy.deepcopy(RECORD["services"]), RECORD)
    assert plan["rollback"] is False
    assert "are its last good release" in plan["reason"]


def test_check_mode_and_render_mode_roll_nothing_back():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD, dry_run=True)
    assert plan["rollback"] is False
    assert "Check mode and render mode change nothing" in plan["reason"]


def test_an_unreadable_record_rolls_nothing_back_and_says_why():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, {}, record_error="Forbidden")
    assert plan["rollback"] is False
    assert "could not be read (Forbidden)" in plan["reason"]


def test_the_release_id_changes_with_the_image_and_with_the_definition_only():
    base = {"engine": ENGINE_GOOD, "user_interface": UI_GOOD}
    assert release.release_id(base) == release.release_id(copy.deepcopy(base))
    assert release.release_id(base) != release.release_id({**base, "engine": ENGINE_BAD})
    rebuilt = {**ENGINE_GOOD, "image_id": "sha256:rebuilt"}
    assert release.release_id(base) != release.release_id({**base, "engine": rebuilt})


def test_the_rollback_stages_hold_the_recorded_objects_and_wait_for_them():
    recorded = {"engine": {"image": "e", "stage": "40-engine", "objects": [{"kind": "Deployment"}]}}
    assert release.rollback_stages(recorded, ["engine"]) == [
        {"stage": "40-engine", "objects": [{"kind": "Deployment"}], "wait": True}
    ]


# -- the one message ------------------------------------------------------------------------------


def message(plan, outcome, cluster="docker-west"):
    return release.rollback_message(
        plan, outcome, "Check that west-engine-1 passed its gate.", "it exits", cluster, HOSTS, REGIONS
    )


def test_the_message_says_what_failed_what_was_rolled_back_and_that_the_next_regions_were_not_touched():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD)
    text = message(plan, {"rolled_back": True, "smoke_test": "passed"})
    assert text.startswith(
        "Rollout stopped in region west-1 (cluster docker-west): step 'Check that west-engine-1 passed its gate.' "
        "failed: it exits."
    )
    assert f"Rolled back engine from {plan['from']} to the last good {plan['to']}." in text
    assert "The region passed its smoke test again on the last good release." in text
    assert "The other regions were not touched: east-1 (docker-east), south-1 (docker-south) did not start." in text


def test_the_message_of_a_later_region_says_the_earlier_ones_keep_the_new_release():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD)
    text = message(plan, {"rolled_back": True, "smoke_test": "passed"}, cluster="docker-east")
    assert "The regions after it were not touched: south-1 (docker-south) did not start." in text
    assert "Regions rolled out before it passed their gate and keep the new release: west-1 (docker-west)." in text


def test_the_message_of_the_last_region_says_no_region_comes_after_it():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD)
    text = message(plan, {"rolled_back": True, "smoke_test": "passed"}, cluster="docker-south")
    assert "The regions after it were not touched: there are none after it." in text


def test_the_message_says_when_the_smoke_test_fails_again_after_the_rollback():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD)
    text = message(plan, {"rolled_back": True, "smoke_test": "failed", "error": "no result within 60 s"})
    assert "The smoke test FAILED again after the rollback (no result within 60 s): the region needs attention." in text


def test_the_message_says_when_the_rollback_itself_fails():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, RECORD)
    text = message(plan, {"rolled_back": False, "smoke_test": "not run", "error": "image missing"})
    assert "FAILED too (image missing): the region needs attention." in text
    assert "Rolled back" not in text


def test_the_message_of_a_first_deploy_says_nothing_was_rolled_back():
    plan = release.rollback_plan({"engine": ENGINE_BAD}, None)
    text = message(plan, {"rolled_back": False, "smoke_test": "not run"})
    assert "No last good release is recorded for this cluster (first deploy)" in text
    assert "Rolled back" not in text
    assert "The other regions were not touched" in text


def test_the_failure_text_of_a_loop_is_its_first_failed_item():
    result = {"msg": "One or more items failed", "results": [{"failed": False}, {"failed": True, "msg": "gate failed"}]}
    assert release.failure_text(result) == "gate failed"
    assert release.failure_text({"msg": "x " * 1000}).endswith("...")
    assert release.failure_text(None) == "no message"


# -- the drain's changes to a recorded release ----------------------------------------------------


def test_a_drain_sets_drain_to_url_on_the_recorded_containers_and_an_undrain_removes_it():
    recorded = [{"name": "west-ui-1", "env": {"USER_INTERFACE_HTTP_PORT": "8080"}}]
    drained = drain.drain_containers(recorded, "http://east:8080")
    assert drained[0]["env"] == {"USER_INTERFACE_HTTP_PORT": "8080", "USER_INTERFACE_DRAIN_TO_URL": "http://east:8080"}
    assert recorded[0]["env"] == {"USER_INTERFACE_HTTP_PORT": "8080"}, "the record itself is not changed"
    assert drain.drain_containers(drained, "") == recorded


def test_a_drain_sets_drain_to_url_in_the_recorded_config_ini_and_rolls_the_pods():
    config = "[user-interface]\nhttp_port = 8080\nmode = api"
    objects = [
        {"kind": "ConfigMap", "data": {"config.ini": config}},
        {"kind": "Deployment", "spec": {"template": {"metadata": {"annotations": {"checksum/config": "old"}}}}},
    ]
    drained = drain.drain_objects(objects, "https://east.example.com")
    new_config = drained[0]["data"]["config.ini"]
    assert new_config == config + "\ndrain_to_url = https://east.example.com"
    assert drained[1]["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == (
        hashlib.sha256(new_config.encode()).hexdigest()
    )
    again = drain.drain_objects(drained, "https://east.example.com")
    assert again[0]["data"]["config.ini"].count("drain_to_url") == 1
    assert objects[0]["data"]["config.ini"] == config, "the record itself is not changed"


def test_a_drain_refuses_objects_without_a_config_ini():
    with pytest.raises(ValueError, match=r"no ConfigMap with a config\.ini"):
        drain.drain_objects([{"kind": "Deployment"}], "https://east.example.com")
