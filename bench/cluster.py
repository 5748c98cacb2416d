"""What replication costs: the pipeline benchmark on a 3-node RabbitMQ cluster beside a 1-node broker.

    make bench-cluster                       # = python -m bench.cluster (from the repository root)
    python -m bench.cluster --n 5000 --window 200 [--rate 500]

Starts, on loopback, one single node and a cluster of three nodes of Debian's rabbitmq-server
(tools/rabbitmq_local.py: private names, ports, data directories and HOMEs, joined with
`rabbitmqctl join_cluster`). On each, a warm-up run of bench.pipeline.run_pipeline lets the services
declare their queues; the jobs queue (the queue bound to job-exchange under `job`) must then be a
quorum queue with one member per node, which is checked (management API) and printed
(`rabbitmq-queues quorum_status`) before the measured run. The services connect to the first node,
so that node holds the queue's leader; each job is replicated to the two others before the broker
confirms it. Output: a table on stdout, then one JSON line for the run's context and one per broker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from bench.measure import context_lines, run_context, show, text_table
from bench.pipeline import run_pipeline
from tools.rabbitmq_local import Broker, Cluster

CLUSTER_SIZE = 3
# The wire protocol's names (services/jobstack_common/protocol.py): the jobs queue is whichever
# queue the services bound to this exchange under this key, whatever its configured name.
EXCHANGE, JOB_KEY = "job-exchange", "job"


def jobs_queue(target: Broker | Cluster) -> str:
    bindings = target.api("GET", f"/api/exchanges/%2F/{EXCHANGE}/bindings/source")
    assert isinstance(bindings, list)
    queues = [b["destination"] for b in bindings if b["routing_key"] == JOB_KEY and b["destination_type"] == "queue"]
    if len(queues) != 1:
        raise SystemExit(f"bench: expected one queue bound to {EXCHANGE} under {JOB_KEY!r}, found {queues}")
    return queues[0]


def quorum_members(target: Broker | Cluster, queue: str) -> list[str]:
    info = target.api("GET", f"/api/queues/%2F/{urllib.parse.quote(queue)}")
    assert isinstance(info, dict)
    if info.get("type") != "quorum":
        raise SystemExit(f"bench: the jobs queue {queue!r} is a {info.get('type')} queue, not a quorum queue")
    return sorted(info.get("members", []))


def verified_members(target: Broker | Cluster, expected: int) -> tuple[str, list[str]]:
    """The jobs queue and its members, or SystemExit when it has not one member per node."""
    queue = jobs_queue(target)
    members = quorum_members(target, queue)
    if len(members) != expected:
        raise SystemExit(f"bench: the jobs queue {queue!r} has {len(members)} members {members}, expected {expected}")
    return queue, members


def status_table(rows: list[dict[str, object]]) -> str:
    columns = ["Node Name", "Raft State", "Log Index", "Commit Index", "Term"]
    return "\n".join(text_table(columns, [[show(row.get(column)) for column in columns] for row in rows]))


def measure(name: str, url: str, arguments: argparse.Namespace) -> dict[str, Any]:
    if arguments.rate:
        count = int(arguments.rate * arguments.seconds)
        # Open loop, as bench.pipeline's latency mode: the window only caps memory.
        return run_pipeline(url, f"{name} latency@{arguments.rate:g}/s", count, 10000, arguments.rate)
    return run_pipeline(url, name, arguments.n, arguments.window, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=int(os.environ.get("N", "5000")), help="jobs per broker")
    parser.add_argument("--window", type=int, default=int(os.environ.get("WINDOW", "200")), help="jobs in flight")
    parser.add_argument("--warmup", type=int, default=200, help="jobs of the warm-up run that declares the queues")
    parser.add_argument("--rate", type=float, default=0, help="offered jobs/s (latency mode); 0 = throughput")
    parser.add_argument("--seconds", type=float, default=10, help="duration of the latency mode")
    arguments = parser.parse_args()
    if arguments.n < 1 or arguments.window < 1 or arguments.warmup < 1 or arguments.rate < 0:
        parser.error("need --n, --window and --warmup >= 1 and --rate >= 0")

    context = run_context()
    base = Path(tempfile.mkdtemp(prefix="jobstack-bench-cluster-"))
    (base / "single").mkdir()
    single = Broker(base / "single")
    cluster = Cluster(base / "cluster", CLUSTER_SIZE)
    rows = []
    try:
        single.launch()  # starts while the cluster forms
        cluster.start()
        single.wait_ready()
        for name, target, size in (("1 node", single, 1), (f"{CLUSTER_SIZE}-node cluster", cluster, CLUSTER_SIZE)):
            print(f"bench: {name}: warm-up ...", file=sys.stderr, flush=True)
            run_pipeline(target.url(), f"{name} warm-up", arguments.warmup, arguments.window, 0)
            queue, members = verified_members(target, size)
            if isinstance(target, Cluster):
                print(f"rabbitmq-queues quorum_status {queue} (before the measured run):")
                print(status_table(target.quorum_status(queue)), flush=True)
            print(f"bench: {name}: measured run ...", file=sys.stderr, flush=True)
            figures = measure(name, target.url(), arguments)
            rows.append({"bench": "cluster", "broker": name, "jobs_queue": queue, "members": members, **figures})
            if target is single:
                single.stop()  # its CPU is the cluster's from here on
    finally:
        cluster.cleanup()
        single.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    single_row, cluster_row = rows
    for key in ("jobs_per_s", "p50_ms", "p99_ms"):
        if single_row.get(key) and cluster_row.get(key):
            cluster_row[f"{key}_vs_1_node"] = round(cluster_row[key] / single_row[key], 2)

    columns = ["broker", "quorum members", "jobs/s", "p50 ms", "p99 ms"]
    body = [[show(row[key]) for key in ("broker", "members", "jobs_per_s", "p50_ms", "p99_ms")] for row in rows]
    body.append(
        ["cluster ÷ 1 node", ""] + [show(cluster_row.get(f"{k}_vs_1_node")) for k in ("jobs_per_s", "p50_ms", "p99_ms")]
    )
    print("\n" + "\n".join(text_table(columns, body)))
    mode = (
        f"{arguments.rate:g} jobs/s offered for {arguments.seconds:g} s"
        if arguments.rate
        else (f"N={arguments.n}, window={arguments.window}")
    )
    print(f"\nbench.pipeline.run_pipeline ({mode}), one engine and one user_interface, connected to the first node.")
    print(
        "All nodes share this machine: replication here costs CPU and loopback round trips, not network latency."
        " The cluster idled during the 1-node run; the single node was stopped before the cluster's runs."
    )
    print("\n".join(context_lines(context)))
    print(json.dumps({"bench": "cluster", "context": context, "cluster_size": CLUSTER_SIZE}))
    for row in rows:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
