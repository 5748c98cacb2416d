"""A user interface on a node without a member of the results stream waits for one; it does not exit.

RabbitMQ refuses a stream consumer with 406 ("does not have a replica on the local node") while the
node it is connected to runs no member of the stream: right after the stream is declared, while the
node restarts, or until a replica is added there. That refusal passes; a conflict of declarations
does not. On a real 2-node cluster the stream keeps its only member on the first node; a user
interface connected to the second node must stay up (not ready, saying why in its log) and become
ready once the second node gets its replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from tools.rabbitmq_local import RABBITMQ_STREAMS, Cluster

from .processes import Service, wait_for

STREAM = "jobstack.results"


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("stream-cluster"), size=2)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.cleanup()


def test_a_user_interface_waits_for_a_local_stream_replica(
    cluster: Cluster, services: Callable[..., Service], tmp_path: Path
) -> None:
    first, second = cluster.nodes
    connection = pika.BlockingConnection(pika.URLParameters(first.url()))
    try:
        # Declared as the services declare it (a member on each node), then the second node's removed.
        connection.channel().queue_declare(STREAM, durable=True, arguments={"x-queue-type": "stream"})
    finally:
        connection.close()
    first.ctl("delete_replica", STREAM, second.node, tool=RABBITMQ_STREAMS)

    ui = services("user_interface", second.url(), wait_ready=False, connect_timeout=120)
    wait_for(
        lambda: any("replica on the local node" in line.get("error", "") for line in ui.log_lines()),
        timeout=60,
        message="the user interface to be refused its stream consumer",
    )
    assert ui.process is not None and ui.process.poll() is None, ui.log_text()
    assert ui.get("/readyz")[0] == 503

    second.ctl("add_replica", STREAM, second.node, tool=RABBITMQ_STREAMS)
    ui.wait_ready(timeout=90)
    assert ui.process.poll() is None
