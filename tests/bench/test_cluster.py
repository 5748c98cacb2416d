"""bench.cluster and tools.rabbitmq_local.Cluster: three real nodes, and a jobs queue with a member on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cluster as cluster_bench
from bench.pipeline import run_pipeline
from tools.rabbitmq_local import Cluster

from .benchrun import run_bench


def test_the_cluster_bench_measures_one_node_and_three_with_a_member_on_each() -> None:
    stdout, lines = run_bench("bench.cluster", "--n", "50", "--window", "10", "--warmup", "5")
    header, single, replicated = lines
    assert header["cluster_size"] == 3 and "quiet" in header["context"]

    assert single["broker"] == "1 node" and len(single["members"]) == 1
    assert replicated["broker"] == "3-node cluster" and len(set(replicated["members"])) == 3
    for row in (single, replicated):
        assert row["n"] == 50  # run_pipeline fails the command unless every job completed
        assert row["jobs_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert replicated["jobs_per_s_vs_1_node"] == round(replicated["jobs_per_s"] / single["jobs_per_s"], 2)

    # The printed `rabbitmq-queues quorum_status` lists the same three nodes, one of them the leader.
    status = stdout.split("rabbitmq-queues quorum_status", 1)[1].splitlines()[3:6]
    assert sorted(line.split()[0] for line in status) == replicated["members"]
    assert [line.split()[1] for line in status].count("leader") == 1


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-node cluster on which the real engine and user_interface ran 20 jobs (through the first node)."""
    nodes = Cluster(Path(tmp_path_factory.mktemp("cluster")), 3)
    try:
        nodes.start()
        assert run_pipeline(nodes.url(), "members", 20, 5, 0)["n"] == 20
        yield nodes
    finally:
        nodes.cleanup()


def test_the_jobs_queue_the_services_declare_has_a_member_on_every_node(three_nodes: Cluster) -> None:
    names = sorted(node.node for node in three_nodes.nodes)
    assert sorted(three_nodes.running_nodes()) == names and len(set(names)) == 3

    queue = cluster_bench.jobs_queue(three_nodes)
    assert three_nodes.quorum_members(queue) == names
    raft = three_nodes.quorum_status(queue)
    assert sorted(str(row["Node Name"]) for row in raft) == names
    assert [row["Raft State"] for row in raft].count("leader") == 1
    # Every node knows the queue and its members, not only the one the services talked to.
    for node in three_nodes.nodes:
        info = node.api("GET", f"/api/queues/%2F/{queue}")
        assert isinstance(info, dict) and sorted(info["members"]) == names


def test_the_bench_refuses_a_jobs_queue_without_one_member_per_node(three_nodes: Cluster) -> None:
    with pytest.raises(SystemExit, match=r"has 3 members .*expected 4"):
        cluster_bench.verified_members(three_nodes, 4)
