"""What JobstackQuorumQueueBelowTarget counts, on a real two-node RabbitMQ cluster.

The alert counts the nodes that report a queue's Raft term, and takes the backlog as the max over
nodes. Both rest on how rabbitmq_prometheus reports quorum queues, checked here: every node that
hosts a member reports the term, a node without a member does not, and only the leader reports
the queue's message counts.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pika
import pytest

from .test_metric_names import PrometheusBroker

CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
DETAILED = "/metrics/detailed?family=queue_coarse_metrics&family=ra_metrics"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusBroker, PrometheusBroker]]:
    nodes = []
    for name in ("first", "second"):
        base = tmp_path_factory.mktemp(f"rabbitmq-{name}")
        # Nodes of one cluster share the Erlang cookie and one epmd.
        cookie = base / ".erlang.cookie"
        cookie.write_text("JOBSTACKMONITORINGTESTCOOKIE")
        cookie.chmod(0o400)
        nodes.append(PrometheusBroker(base))
    first, second = nodes
    second.epmd_port = first.epmd_port
    try:
        first.start()
        second.start()
        for command in (["stop_app"], ["join_cluster", first.node], ["start_app"]):
            subprocess.run(
                [CTL, "-n", second.node, *command], env=second.env, check=True, capture_output=True, timeout=120
            )
        yield first, second
    finally:
        second.cleanup()
        first.cleanup()


def reporting(node: PrometheusBroker, metric: str) -> set[str]:
    """The queues for which a node reports a series of `metric`."""
    return {
        line.split('queue="', 1)[1].split('"', 1)[0]
        for line in node.scrape(DETAILED).splitlines()
        if line.startswith(metric + "{")
    }


def test_each_node_with_a_member_reports_the_raft_term_and_only_the_leader_the_backlog(
    two_nodes: tuple[PrometheusBroker, PrometheusBroker],
) -> None:
    first, second = two_nodes
    connection = pika.BlockingConnection(pika.URLParameters(first.url()))
    channel = connection.channel()
    channel.queue_declare("jobstack.jobs", durable=True, arguments={"x-queue-type": "quorum"})
    # Declared with one member: the case the alert exists for.
    channel.queue_declare(
        "jobstack.jobs.dead", durable=True, arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": 1}
    )
    connection.close()

    term, backlog = "rabbitmq_detailed_raft_term_total", "rabbitmq_detailed_queue_messages_ready"

    def backlog_reported() -> bool:
        return any("jobstack.jobs" in reporting(node, backlog) for node in two_nodes)

    # Statistics are emitted every few seconds, Raft metrics as soon as the members start.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ("jobstack.jobs" in reporting(second, term) and backlog_reported()):
        time.sleep(1)

    members = {
        queue: sum(queue in reporting(node, term) for node in two_nodes)
        for queue in ("jobstack.jobs", "jobstack.jobs.dead")
    }
    assert members == {"jobstack.jobs": 2, "jobstack.jobs.dead": 1}
    assert sum("jobstack.jobs" in reporting(node, backlog) for node in two_nodes) == 1, (
        "the backlog must be reported by exactly one node, the leader"
    )
