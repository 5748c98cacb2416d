"""Private RabbitMQ on loopback for tests and benchmarks: Debian's rabbitmq-server, free ports, a temp dir.

Broker is one node; Cluster joins several of them (rabbitmqctl join_cluster) into one cluster.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
# The tools themselves, not Debian's /usr/sbin wrappers, which switch to the rabbitmq user.
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
RABBITMQ_QUEUES = "/usr/lib/rabbitmq/bin/rabbitmq-queues"
RABBITMQ_STREAMS = "/usr/lib/rabbitmq/bin/rabbitmq-streams"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """Start, stop and restart one node; its data survives a restart (same ports, same dir)."""

    def __init__(self, base: Path, *, cluster_epmd_port: int | None = None, cookie: str | None = None) -> None:
        """A node in base; a Cluster passes its shared epmd port and Erlang cookie (and then needs no TLS)."""
        self.base = base
        self.amqp_port, self.dist_port, self.epmd_port, self.http_port, self.tls_port = (free_port() for _ in range(5))
        # Nodes of one cluster find each other through one epmd, which the Cluster then stops.
        self.owns_epmd = cluster_epmd_port is None
        if cluster_epmd_port is not None:
            self.epmd_port = cluster_epmd_port
        self.node = f"jobstack-test-{self.amqp_port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        if cookie is not None:
            # HOME is base, so the node and rabbitmqctl read the cookie from here: same cookie, one cluster.
            cookie_file = base / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        config = (
            f"management.tcp.port = {self.http_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
        )
        if cluster_epmd_port is None:
            self.ca_file = make_certificates(base)
            config += (
                f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
                f"ssl_options.cacertfile = {self.ca_file}\n"
                f"ssl_options.certfile = {base / 'server.pem'}\n"
                f"ssl_options.keyfile = {base / 'server.key'}\n"
                "ssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )
        (base / "rabbitmq.conf").write_text(config)

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
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the node without waiting for it (a Cluster starts its nodes side by side)."""
        with open(self.base / "server.out", "ab") as log:
            self.process = subprocess.Popen(
                [SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until this node's management API answers, or RuntimeError naming the node's log."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.base / 'server.out'}\n{self.log_tail()}")
            try:
                # Another node (of another test run) may hold the port we picked: ask whose API it is.
                overview = self.api("GET", "/api/overview")
                if isinstance(overview, dict) and overview.get("node") == self.node:
                    return
            except OSError:
                pass
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
        if self.owns_epmd:
            stop_epmd(self.env)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the node's own log and console output, for error messages."""
        tails = []
        for log in [*sorted((self.base / "log").glob("*.log")), self.base / "server.out"]:
            with contextlib.suppress(OSError):
                tails.append(f"{log.name}: " + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)

    def ctl(self, *arguments: str, tool: str = RABBITMQCTL, timeout: float = 60) -> str:
        """Run rabbitmqctl (or rabbitmq-queues, ...) against this node; its stdout, or RuntimeError."""
        done = subprocess.run(
            [tool, "-n", self.node, *arguments],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            command = f"{Path(tool).name} {' '.join(arguments)}"
            raise RuntimeError(f"{command} on {self.node} failed (exit {done.returncode}): {done.stderr.strip()}")
        return done.stdout

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


def stop_epmd(env: dict[str, str]) -> None:
    """epmd outlives the nodes; it listens on our own port (ERL_EPMD_PORT in env), so stop it too."""
    epmd = shutil.which("epmd") or next(iter(sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))), None)
    if epmd:
        subprocess.run([epmd, "-kill"], env=env, check=False, capture_output=True)
    # `epmd -kill` refuses while it still counts a node as registered (a node killed a moment ago):
    # then end the epmd started with our port ourselves, found by the environment it inherited.
    wanted = f"ERL_EPMD_PORT={env['ERL_EPMD_PORT']}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "epmd" and wanted in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read


class Cluster:
    """size nodes on loopback joined into one cluster, so a quorum queue declared on it gets size members.

    Every node has its own name, ports, data directory and HOME; they share one epmd port and one
    Erlang cookie. Clients may use any node's URL: the first node's is `url()`.
    """

    def __init__(self, base: Path, size: int = 3) -> None:
        if size < 2:
            raise ValueError(f"a cluster needs at least 2 nodes, got size={size}")
        epmd_port = free_port()
        cookie = secrets.token_hex(20)
        self.base = base
        self.nodes: list[Broker] = []
        for index in range(size):
            (base / f"node{index + 1}").mkdir(parents=True)
            self.nodes.append(Broker(base / f"node{index + 1}", cluster_epmd_port=epmd_port, cookie=cookie))

    def start(self, timeout: float = 120) -> None:
        """Start every node, join the others to the first (stop_app, join_cluster, start_app), wait for all."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(timeout)
        first, joining = self.nodes[0], self.nodes[1:]
        try:
            # stop_app and start_app take seconds each, so the joining nodes do them side by side;
            # the joins themselves go one at a time (each changes the cluster's membership).
            with concurrent.futures.ThreadPoolExecutor(len(joining)) as pool:
                list(pool.map(lambda node: node.ctl("stop_app"), joining))
                for node in joining:
                    node.ctl("join_cluster", first.node)
                list(pool.map(lambda node: node.ctl("start_app"), joining))
        except RuntimeError as error:
            # The caller's cleanup removes the logs: keep what explains the failure in the message.
            raise RuntimeError(f"{error}\n{first.node} log tail:\n{first.log_tail()}") from None
        deadline = time.monotonic() + timeout
        while sorted(self.running_nodes()) != sorted(node.node for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not form within {timeout} s: running {self.running_nodes()}")
            time.sleep(0.3)

    def running_nodes(self) -> list[str]:
        nodes = self.nodes[0].api("GET", "/api/nodes")
        assert isinstance(nodes, list)
        return [node["name"] for node in nodes if node.get("running")]

    def url(self, vhost: str = "/") -> str:
        return self.nodes[0].url(vhost)

    def api(self, method: str, path: str, body: object | None = None) -> object:
        return self.nodes[0].api(method, path, body)

    def quorum_members(self, queue: str, vhost: str = "/") -> list[str]:
        """The members of a quorum queue, as the management API lists them."""
        info = self.api("GET", f"/api/queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue)}")
        assert isinstance(info, dict)
        if info.get("type") != "quorum":
            raise RuntimeError(f"queue {queue!r} in vhost {vhost!r} is {info.get('type')!r}, not a quorum queue")
        return sorted(info.get("members", []))

    def quorum_status(self, queue: str, vhost: str = "/") -> list[dict[str, object]]:
        """`rabbitmq-queues quorum_status`: one row per Raft member ("Node Name", "Raft State", ...)."""
        text = self.nodes[0].ctl("quorum_status", queue, "--vhost", vhost, "--formatter", "json", tool=RABBITMQ_QUEUES)
        rows = json.loads(text)
        assert isinstance(rows, list)
        return rows

    def stop(self) -> None:
        # Side by side: one by one, each node would wait for its peers' shutdown in turn.
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(Broker.stop, self.nodes))
        stop_epmd(self.nodes[0].env)

    def cleanup(self) -> None:
        """Kill every node at once: their data is deleted next, so a graceful stop would only cost seconds."""
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait()
                node.process = None
        stop_epmd(self.nodes[0].env)
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
