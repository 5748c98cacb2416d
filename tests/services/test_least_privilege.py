"""The broker users, permissions and topology that Kubernetes gets are sufficient, and no more, on a real broker.

The test renders the broker role (render mode, no cluster), then does on the private test broker what the
Messaging Topology Operator does with those resources (the management API calls of its controllers): the
vhost, one user per client with exactly the rendered permissions, the exchanges, queues, bindings and
policies with the rendered arguments. Then the engine and the user_interface start with the rendered
config.ini and their credentials from files, over AMQPS verified against the broker's CA, declare their
topology over the operator's (a different argument would be refused), and run a job end to end; a refused
job is dead-lettered. Finally each client is refused what it was not granted.
"""

from __future__ import annotations

import configparser
import json
import secrets
import ssl
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import yaml

from tools.rabbitmq_local import Broker, ExternalBroker, management_api

from .processes import ROOT, Service, wait_for

BIN = Path(sys.executable).parent


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The broker's and services' resources of inventories/dev, with the KEDA user too, by kind. A broker
    name and vhost of this test's own: users are broker-wide, and the test broker is shared."""
    root = tmp_path_factory.mktemp("least-privilege-render")
    suffix = secrets.token_hex(3)
    command = [
        str(BIN / "ansible-playbook"),
        "site.yml",
        "-i",
        "inventories/dev",
        "--tags",
        "rabbitmq_cluster,apps",
        "-e",
        json.dumps(
            {
                "render_only": True,
                "jobstack_render_root": str(root),
                "images_tag": "0123456789ab",
                "engine_autoscaling": "keda",
                "jobstack_broker_name": f"lp{suffix}",
                "jobstack_vhost": f"least-privilege-{suffix}",
            }
        ),
    ]
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(root), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root / "dev" / "minikube-jobstack").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


class Topology:
    """The rendered resources, created on the test broker the way the Topology Operator creates them."""

    def __init__(self, broker: Broker | ExternalBroker, rendered: dict[str, list[dict[str, Any]]]) -> None:
        if isinstance(broker, Broker):
            self.base, self.admin = broker.management_url, ("guest", "guest")
        else:
            self.base, self.admin = broker.management_url, (broker.user, broker.password)
        self.rendered = rendered
        self.vhost = rendered["Vhost"][0]["spec"]["name"]
        self.passwords = {user["metadata"]["name"]: secrets.token_urlsafe(16) for user in rendered["User"]}

    def api(self, method: str, path: str, body: object | None = None) -> Any:
        return management_api(self.base, *self.admin, method, path, body)

    def create(self) -> None:
        vhost = quote(self.vhost)
        self.api("PUT", f"/api/vhosts/{vhost}", {})
        # internal/user.go: no tags means a user that can only connect over messaging protocols.
        for user in self.rendered["User"]:
            body = {"password": self.passwords[user["metadata"]["name"]], "tags": ",".join(user["spec"]["tags"])}
            self.api("PUT", f"/api/users/{quote(user['metadata']['name'])}", body)
        for permission in self.rendered["Permission"]:
            spec = permission["spec"]
            assert spec["vhost"] == self.vhost
            self.api("PUT", f"/api/permissions/{vhost}/{quote(spec['userReference']['name'])}", spec["permissions"])
        for policy in self.rendered["Policy"]:
            spec = policy["spec"]
            body = {
                "pattern": spec["pattern"],
                "definition": spec["definition"],
                "priority": spec["priority"],
                "apply-to": spec["applyTo"],
            }
            self.api("PUT", f"/api/policies/{vhost}/{quote(spec['name'])}", body)
        # internal/exchange_settings.go and queue_settings.go (rabbit-hole turns type into x-queue-type).
        for exchange in self.rendered["Exchange"]:
            spec = exchange["spec"]
            body = {
                "type": spec["type"],
                "durable": spec["durable"],
                "auto_delete": spec["autoDelete"],
                "arguments": {},
            }
            self.api("PUT", f"/api/exchanges/{vhost}/{quote(spec['name'])}", body)
        for queue in self.rendered["Queue"]:
            spec = queue["spec"]
            body = {
                "durable": spec["durable"],
                "auto_delete": spec["autoDelete"],
                "arguments": {"x-queue-type": spec["type"]},
            }
            self.api("PUT", f"/api/queues/{vhost}/{quote(spec['name'])}", body)
        for binding in self.rendered["Binding"]:
            spec = binding["spec"]
            path = f"/api/bindings/{vhost}/e/{quote(spec['source'])}/q/{quote(spec['destination'])}"
            self.api("POST", path, {"routing_key": spec["routingKey"], "arguments": {}})

    def delete(self) -> None:
        for user in self.passwords:
            self.api("DELETE", f"/api/users/{quote(user)}")
        self.api("DELETE", f"/api/vhosts/{quote(self.vhost)}")

    def user(self, suffix: str) -> str:
        return next(name for name in self.passwords if name.endswith(f"-{suffix}"))


@pytest.fixture
def topology(broker: Broker | ExternalBroker, rendered: dict[str, list[dict[str, Any]]]) -> Iterator[Topology]:
    created = Topology(broker, rendered)
    created.create()
    yield created
    created.delete()


def connection_settings(broker: Broker | ExternalBroker) -> dict[str, Any]:
    """Where the services reach the test broker: AMQPS verified against its CA (the private broker), or the
    URL's broker as it is. Everything else comes from the rendered config.ini."""
    if isinstance(broker, Broker):
        return {"host": "localhost", "port": broker.tls_port, "tls": "true", "tls_ca_file": str(broker.ca_file)}
    parts = broker.parts
    return {"host": parts.hostname, "port": parts.port or 5672, "tls": str(parts.scheme == "amqps").lower()}


def start_service(
    tmp_path: Path,
    rendered: dict[str, list[dict[str, Any]]],
    topology: Topology,
    broker: Broker | ExternalBroker,
    app: str,
) -> Service:
    name = app.replace("-", "_")
    config = next(doc for doc in rendered["ConfigMap"] if doc["metadata"]["name"] == f"{app}-config")
    ini = tmp_path / f"{name}.ini"
    ini.write_text(config["data"]["config.ini"])
    parser = configparser.ConfigParser()
    parser.read_string(config["data"]["config.ini"])
    assert parser[parser.sections()[0]]["tls"] == "true"  # what Kubernetes gets
    credentials = tmp_path / app
    credentials.mkdir()
    user = topology.user(app)
    (credentials / "username").write_text(user)
    (credentials / "password").write_text(topology.passwords[user])
    prefix = name.upper()
    service = Service(name, "", tmp_path)
    service.args = ["--config", str(ini)]
    service.env.pop("AMQP_URL")
    service.env.update(
        {
            "AMQP_USERNAME_FILE": str(credentials / "username"),
            "AMQP_PASSWORD_FILE": str(credentials / "password"),
            f"{prefix}_LOG_FORMAT": "json",
            **{f"{prefix}_{key.upper()}": str(value) for key, value in connection_settings(broker).items()},
        }
    )
    return service


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def client(broker: Broker | ExternalBroker, topology: Topology, user: str) -> pika.BlockingConnection:
    settings = connection_settings(broker)
    ssl_options = None
    if settings["tls"] == "true":
        context = ssl.create_default_context(cafile=settings.get("tls_ca_file"))
        ssl_options = pika.SSLOptions(context, server_hostname=settings["host"])
    parameters = pika.ConnectionParameters(
        host=settings["host"],
        port=int(settings["port"]),
        virtual_host=topology.vhost,
        credentials=pika.PlainCredentials(user, topology.passwords[user]),
        ssl_options=ssl_options,
    )
    return pika.BlockingConnection(parameters)


def test_each_service_runs_a_job_with_its_own_least_privilege_user_over_amqps(
    broker: Broker | ExternalBroker,
    rendered: dict[str, list[dict[str, Any]]],
    topology: Topology,
    launched: list[Service],
    tmp_path: Path,
) -> None:
    for app in ("engine", "user-interface"):
        service = start_service(tmp_path, rendered, topology, broker, app)
        launched.append(service)
        service.start()
    _engine, ui = launched
    status, body = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
    assert status == 202, body
    job_id = body["job_id"]

    def finished() -> dict[str, Any] | None:
        answer = ui.get(f"/jobs/{job_id}")[1]
        return answer["result"] if answer["status"] != "pending" else None

    result = wait_for(finished, timeout=60, message=f"the result of {job_id}")
    assert result["status"] == "succeeded" and result["job_id"] == job_id
    # Both connected as their own users, over TLS, in the topology's vhost (the management API lists a
    # connection some seconds after it opened).
    expected = {topology.user("engine"), topology.user("user-interface")}

    def connections() -> list[dict[str, Any]] | None:
        found = topology.api("GET", f"/api/vhosts/{quote(topology.vhost)}/connections")
        return found if {connection["user"] for connection in found} == expected else None

    listed = wait_for(connections, timeout=30, interval=0.5, message="both services' connections")
    if isinstance(broker, Broker):
        assert all(connection["ssl"] for connection in listed)


def test_a_refused_job_is_dead_lettered_by_the_engine_with_its_permissions(
    broker: Broker | ExternalBroker,
    rendered: dict[str, list[dict[str, Any]]],
    topology: Topology,
    launched: list[Service],
    tmp_path: Path,
) -> None:
    engine = start_service(tmp_path, rendered, topology, broker, "engine")
    launched.append(engine)
    engine.start()
    # Someone with other rights publishes a job the engine must refuse (not JSON).
    vhost = quote(topology.vhost)
    body = {
        "properties": {"message_id": str(uuid.uuid4())},
        "routing_key": "job",
        "payload": "not json",
        "payload_encoding": "string",
    }
    assert topology.api("POST", f"/api/exchanges/{vhost}/job-exchange/publish", body)["routed"] is True

    def dead_letters() -> int:
        return topology.api("GET", f"/api/queues/{vhost}/jobstack.jobs.dead").get("messages", 0)

    wait_for(lambda: dead_letters() == 1, timeout=60, message="the refused job in jobstack.jobs.dead")
    # The queue limits come from the rendered policies, as on Kubernetes.
    jobs = topology.api("GET", f"/api/queues/{vhost}/jobstack.jobs")
    assert jobs["effective_policy_definition"]["dead-letter-strategy"] == "at-least-once"
    assert jobs["effective_policy_definition"]["overflow"] == "reject-publish"
    stream = topology.api("GET", f"/api/queues/{vhost}/jobstack.results")
    assert stream["effective_policy_definition"]["max-age"] == "7D"


@pytest.mark.parametrize(
    ("app", "action"),
    [
        ("user-interface", "consume the jobs queue"),
        ("engine", "publish to the default exchange"),
        ("keda", "consume the jobs queue"),
        ("keda", "declare another queue"),
    ],
)
def test_each_client_is_refused_what_it_was_not_granted(
    broker: Broker | ExternalBroker, topology: Topology, app: str, action: str
) -> None:
    connection = client(broker, topology, topology.user(app))
    try:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            if action == "consume the jobs queue":
                channel.basic_get("jobstack.jobs")
            elif action == "publish to the default exchange":
                channel.confirm_delivery()
                channel.basic_publish("", "jobstack.results", b"x")
            else:
                channel.queue_declare("jobstack.elsewhere", durable=True)
        assert refused.value.reply_code == 403
    finally:
        if connection.is_open:
            connection.close()


def test_keda_reads_the_jobs_queue_length_with_its_own_user(
    broker: Broker | ExternalBroker, topology: Topology
) -> None:
    connection = client(broker, topology, topology.user("keda"))
    try:
        # The scaler's call (pkg/scalers/rabbitmq_scaler.go): a passive declare, which RabbitMQ 4.2.6 and
        # later allow only with configure permission on the queue, which the KEDA user has.
        declared = connection.channel().queue_declare("jobstack.jobs", passive=True)
        assert declared.method.message_count == 0
    finally:
        connection.close()
