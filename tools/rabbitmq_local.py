"""A private RabbitMQ node on loopback for tests and benchmarks: Debian's rabbitmq-server, free ports, a temp dir."""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """Start, stop and restart one node; its data survives a restart (same ports, same dir)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.amqp_port, self.dist_port, self.epmd_port, self.http_port, self.tls_port = (free_port() for _ in range(5))
        self.node = f"jobstack-test-{self.amqp_port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        self.ca_file = make_certificates(base)
        (base / "rabbitmq.conf").write_text(
            f"management.tcp.port = {self.http_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
            f"ssl_options.cacertfile = {self.ca_file}\n"
            f"ssl_options.certfile = {base / 'server.pem'}\n"
            f"ssl_options.keyfile = {base / 'server.key'}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{'%2F' if vhost == '/' else vhost}"

    def start(self, timeout: float = 60) -> None:
        with open(self.base / "server.out", "ab") as log:
            self.process = subprocess.Popen(
                [SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.base / 'server.out'}")
            try:
                self.api("GET", "/api/overview")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"rabbitmq-server did not start within {timeout} s; see {self.base / 'server.out'}")

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # epmd outlives the node; it listens on our own port, so stop it too.
        epmd = shutil.which("epmd") or next(iter(sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))), None)
        if epmd:
            subprocess.run([epmd, "-kill"], env=self.env, check=False, capture_output=True)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def api(self, method: str, path: str, body: object | None = None) -> object:
        return management_api(self.management_url, "guest", "guest", method, path, body)

    def add_vhost(self, name: str) -> str:
        add_vhost(self.management_url, "guest", "guest", name)
        return self.url(name)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def make_certificates(base: Path) -> Path:
    """A throw-away CA and a server certificate for localhost; returns the CA file."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=base, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=jobstack test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"
    )
    (base / "san.ext").write_text("subjectAltName = DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    return base / "ca.pem"


class ExternalBroker:
    """A broker given by RABBITMQ_URL (and RABBITMQ_MANAGEMENT_URL, default port 15672 of its host)."""

    def __init__(self, url: str, management_url: str | None) -> None:
        self.parts = urllib.parse.urlsplit(url)
        self.user = urllib.parse.unquote(self.parts.username or "guest")
        self.password = urllib.parse.unquote(self.parts.password or "guest")
        self.management_url = management_url or f"http://{self.parts.hostname}:15672"

    def add_vhost(self, name: str) -> str:
        add_vhost(self.management_url, self.user, self.password, name)
        return urllib.parse.urlunsplit(self.parts._replace(path="/" + name))

    def cleanup(self) -> None:
        pass


def add_vhost(base_url: str, user: str, password: str, name: str) -> None:
    management_api(base_url, user, password, "PUT", f"/api/vhosts/{name}")
    permissions = {"configure": ".*", "write": ".*", "read": ".*"}
    management_api(base_url, user, password, "PUT", f"/api/permissions/{name}/{user}", permissions)


def management_api(
    base_url: str, user: str, password: str, method: str, path: str, body: object | None = None
) -> object:
    request = urllib.request.Request(
        f"{base_url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None
