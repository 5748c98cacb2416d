"""The management HTTP API of the test broker, for one vhost: queue counters, policies, connections."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.parse
from typing import Any

from tools.rabbitmq_local import Broker, ExternalBroker, management_api


class Admin:
    def __init__(self, broker: Broker | ExternalBroker, vhost: str) -> None:
        self.broker = broker
        self.vhost = vhost
        if isinstance(broker, Broker):
            self.base, self.user, self.password = broker.management_url, "guest", "guest"
        else:
            self.base, self.user, self.password = broker.management_url, broker.user, broker.password

    def other_administrator(self) -> Admin:
        """An administrator with full rights on this vhost, while the services' user loses some."""
        other = Admin(self.broker, self.vhost)
        other.user, other.password = f"operator-{self.vhost}"[:60], "operator-password"
        self.api(
            "PUT", f"/api/users/{urllib.parse.quote(other.user)}", {"password": other.password, "tags": "administrator"}
        )
        body = {"configure": ".*", "write": ".*", "read": ".*"}
        self.api("PUT", f"/api/permissions/{self._vhost}/{urllib.parse.quote(other.user)}", body)
        return other

    def api(self, method: str, path: str, body: object | None = None) -> Any:
        return management_api(self.base, self.user, self.password, method, path, body)

    @property
    def _vhost(self) -> str:
        return urllib.parse.quote(self.vhost, safe="")

    def queue(self, name: str) -> dict[str, Any]:
        """A queue's counters, refreshed (the management stats lag by up to a few seconds)."""
        return self.api("GET", f"/api/queues/{self._vhost}/{urllib.parse.quote(name, safe='')}")  # type: ignore[no-any-return]

    def wait_queue(self, name: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.queue(name)
            except urllib.error.HTTPError:
                last = {}
            try:
                if last and predicate(last):
                    return last
            except KeyError:
                pass  # the management stats of a new queue appear after a few seconds
            time.sleep(0.5)
        raise AssertionError(f"queue {name} never matched: {last}")

    def set_policy(self, name: str, pattern: str, definition: dict[str, Any], apply_to: str = "queues") -> None:
        body = {"pattern": pattern, "definition": definition, "apply-to": apply_to, "priority": 1}
        self.api("PUT", f"/api/policies/{self._vhost}/{name}", body)

    def delete_queue(self, name: str) -> None:
        self.api("DELETE", f"/api/queues/{self._vhost}/{urllib.parse.quote(name, safe='')}")

    def set_permissions(self, configure: str, write: str = ".*", read: str = ".*") -> None:
        body = {"configure": configure, "write": write, "read": read}
        self.api("PUT", f"/api/permissions/{self._vhost}/{self.user}", body)

    def clear_permissions(self) -> None:
        """The services' user may no longer open the vhost (set_permissions gives them back)."""
        self.api("DELETE", f"/api/permissions/{self._vhost}/{self.user}")

    def connections(self, name_prefix: str) -> list[dict[str, Any]]:
        found = self.api("GET", f"/api/vhosts/{self._vhost}/connections")
        return [
            c for c in found if str(c.get("client_properties", {}).get("connection_name", "")).startswith(name_prefix)
        ]

    def close_connections(self, name_prefix: str) -> int:
        closed = 0
        for connection in self.connections(name_prefix):
            name = urllib.parse.quote(connection["name"], safe="")
            try:
                self.api("DELETE", f"/api/connections/{name}")
                closed += 1
            except urllib.error.HTTPError:
                pass
        return closed


def rabbitmqctl(broker: Broker, *args: str) -> str:
    """rabbitmqctl against a private node (its own HOME holds the Erlang cookie)."""
    result = subprocess.run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", broker.node, *args],
        env=broker.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout
