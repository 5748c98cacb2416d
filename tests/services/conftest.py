"""Fixtures: a real RabbitMQ (private node, or RABBITMQ_URL + RABBITMQ_MANAGEMENT_URL), a fresh vhost per test."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from .processes import PACKAGE_PATH, Service
from tools.rabbitmq_local import Broker, ExternalBroker

# Unit tests import this checkout's `jobstack` package, like the processes they start do.
if PACKAGE_PATH not in sys.path:
    sys.path.insert(0, PACKAGE_PATH)

_vhosts = itertools.count(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker | ExternalBroker]:
    """RABBITMQ_URL (e.g. a RabbitMQ 4.x) when set, otherwise a private Debian rabbitmq-server."""
    if os.environ.get("RABBITMQ_URL"):
        yield ExternalBroker(os.environ["RABBITMQ_URL"], os.environ.get("RABBITMQ_MANAGEMENT_URL"))
        return
    node = Broker(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    yield node
    node.cleanup()


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A node of the test's own, for tests that stop or restart the broker."""
    node = Broker(tmp_path_factory.mktemp("rabbitmq-own"))
    node.start()
    yield node
    node.cleanup()


@pytest.fixture
def amqp_url(broker: Broker | ExternalBroker, request: pytest.FixtureRequest) -> str:
    """A vhost of the test's own: job-exchange is shared by design, so tests must not share one."""
    name = f"t{next(_vhosts)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    return broker.add_vhost(name)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(name: str, amqp_url: str, wait_ready: bool = True, **settings: Any) -> Service:
        service = Service(name, amqp_url, tmp_path, **settings)
        started.append(service)
        return service.start(wait_ready=wait_ready)

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def channel(amqp_url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A plain pika client, independent of the project's code."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection.channel()
    if connection.is_open:
        connection.close()
