"""The services as real processes, the way they run in a container: `python services/<name>/<name>.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.rabbitmq_local import free_port

ROOT = Path(__file__).resolve().parents[2]
# The services import the package `jobstack`; the tests run this checkout's copy of it, whatever
# the venv has installed.
PACKAGE_PATH = str(ROOT / "services")


def checkout_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ plus this checkout's services on PYTHONPATH."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PATH, env.get("PYTHONPATH", "")]))
    return env


class Service:
    def __init__(self, name: str, amqp_url: str, log_dir: Path, **settings: Any) -> None:
        self.name = name
        self.prefix = name.upper()
        self.http_port = free_port()
        self.env = {
            **checkout_environment(),
            "AMQP_URL": amqp_url,
            f"{self.prefix}_HTTP_PORT": str(self.http_port),
            f"{self.prefix}_LOG_FORMAT": "json",
            f"{self.prefix}_LOG_LEVEL": "debug",
        }
        self.env.update({f"{self.prefix}_{key.upper()}": str(value) for key, value in settings.items()})
        self.log_path = log_dir / f"{name}-{self.http_port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        # Command line arguments, e.g. ["--config", path] (default: the service's own config.ini).
        self.args: list[str] = []

    def start(self, wait_ready: bool = True) -> Service:
        script = ROOT / "services" / self.name / f"{self.name}.py"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(script), *self.args], env=self.env, stdout=log, stderr=log
            )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout} s:\n{self.log_text()}")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, _headers, answer = self.raw_request(method, path, data)
        return status, answer

    def raw_request(
        self, method: str, path: str, data: bytes | None = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or text) for any body and content type."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, headers, text = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, text = error.code, dict(error.headers), error.read()
        try:
            return status, headers, json.loads(text)
        except ValueError:
            return status, headers, text.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def metric(self, name: str, labels: str = "") -> float:
        """One sample from /metrics, e.g. metric("jobstack_engine_jobs_total", 'status="succeeded"')."""
        wanted = f"{name}{{{labels}}}" if labels else name
        _status, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"msg": line})
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, message: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if line.get("msg") == message and all(line.get(k) == v for k, v in fields.items()):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never logged {message!r} {fields}:\n{self.log_text()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
