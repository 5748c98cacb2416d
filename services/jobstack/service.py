"""What both services share: the broker connection loop, the HTTP server and the process life cycle."""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from .amqp import BrokerUnavailable, PublishFailed, PublishFailure, Session, TopologyConflict, connection_parameters
from .config import ConfigError, ServiceSettings, load_settings
from .http import ConnectionGuard, RequestObserver
from .logs import setup_logging

log = logging.getLogger("jobstack")

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
# A session that lived this long counts as healthy: the next loss starts the backoff afresh.
STABLE_SESSION_SECONDS = 60.0


class StartupFailed(Exception):
    """The service cannot start (broker unreachable within connect_timeout, conflicting topology)."""


def backoff_delay(attempt: int) -> float:
    """Capped exponential backoff with jitter, so that restarted replicas do not reconnect in step."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class BrokerService(abc.ABC, Generic[SettingsT]):
    """A service with one broker session that it re-establishes until it is told to stop."""

    name: str = ""
    metrics_prefix: str = ""

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings
        self.session: Session | None = None
        self._stopping = asyncio.Event()
        self._http: web.AppRunner | None = None
        self._http_server: asyncio.Server | None = None
        self._guard: ConnectionGuard | None = None
        self.http_port = 0
        prefix = self.metrics_prefix
        self._connected_gauge = Gauge(f"{prefix}_broker_connected", "1 while connected to RabbitMQ")
        self._reconnects = Counter(f"{prefix}_broker_reconnects", "Connections re-established after a loss")
        self.publish_failures = Counter(
            f"{prefix}_publish_failures", "Publishes that were not confirmed, by reason", ["reason"]
        )
        for failure in PublishFailure:
            self.publish_failures.labels(failure.value)
        self._observer = RequestObserver(prefix, lambda: self._guard)

    # -- hooks for the concrete services ------------------------------------------------------
    @abc.abstractmethod
    async def on_connected(self, session: Session) -> None:
        """Declare the topology and start consuming on a fresh session."""

    async def on_disconnected(self) -> None:
        """Forget state that belonged to the lost session."""

    async def drain(self, session: Session) -> None:
        """Stop taking work and finish (or give back) what is in hand; bounded by the grace period."""

    def routes(self) -> list[web.RouteDef]:
        return []

    def not_ready_reason(self) -> str | None:
        """Why /readyz should fail although the broker session is open (None: ready)."""
        return None

    def end_long_responses(self) -> None:
        """End responses that would otherwise stay open (event streams) before the HTTP server stops.

        aiohttp waits for every running handler when it shuts down, for up to a minute.
        """

    # -- state ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.session is not None and not self.session.closed.done() and not self._stopping.is_set()

    @property
    def ready(self) -> bool:
        return self.connected and self.not_ready_reason() is None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def http_guard(self) -> ConnectionGuard | None:
        """The HTTP connection guard, once the HTTP server is listening."""
        return self._guard

    # -- life cycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        await self._start_http()
        try:
            await self._connection_loop()
        finally:
            if self._http_server is not None:
                self._http_server.close()
            self.end_long_responses()
            if self._http is not None:
                await self._http.cleanup()

    async def shutdown(self) -> None:
        """SIGTERM: drain within the grace period, then close the connection."""
        if self._stopping.is_set():
            return
        log.info("shutting down", extra={"grace_seconds": self.settings.shutdown_grace_seconds})
        session = self.session
        if session is not None and not session.closed.done():
            await self.drain(session)
        self._stopping.set()
        if session is not None:
            await session.close()

    async def _connection_loop(self) -> None:
        """Connect, serve, and reconnect after every loss with capped exponential backoff and jitter.

        The backoff also applies after a session that was established and then dropped: a broker
        or a message that keeps closing the connection must not make the service reconnect in a
        tight loop. Only a session that stayed up for STABLE_SESSION_SECONDS resets the count.
        """
        settings = self.settings
        parameters = connection_parameters(settings, f"{self.name}:{settings.instance_id}")
        started = time.monotonic()
        attempt = 0
        connected_before = False
        while not self._stopping.is_set():
            session: Session | None = None
            try:
                session = await Session.open(parameters, self._publish_failed)
                await self.on_connected(session)
            except TopologyConflict as error:
                raise StartupFailed(
                    f"RabbitMQ at {settings.host}:{settings.port} refused our topology: {error}"
                ) from None
            except (BrokerUnavailable, PublishFailed, OSError) as error:
                if session is not None:
                    await session.close()
                attempt += 1
                waited = time.monotonic() - started
                if not connected_before and waited >= settings.connect_timeout:
                    raise StartupFailed(
                        f"cannot connect to RabbitMQ at {settings.host}:{settings.port} "
                        f"(vhost {settings.vhost!r}) after {attempt} attempts in {waited:.0f} s: {error}"
                    ) from None
                await self._back_off(attempt, "broker unavailable, retrying", str(error))
                continue
            if connected_before:
                self._reconnects.inc()
            connected_before = True
            session_started = time.monotonic()
            self.session = session
            self._connected_gauge.set(1)
            log.info("connected to broker", extra={"host": settings.host, "port": settings.port})
            await self._wait_for_close_or_stop(session)
            self._connected_gauge.set(0)
            if isinstance(session.closed_error, TopologyConflict):
                raise StartupFailed(f"RabbitMQ refused our topology: {session.closed_error}")
            if self._stopping.is_set():
                break
            await self.on_disconnected()
            attempt = 1 if time.monotonic() - session_started >= STABLE_SESSION_SECONDS else attempt + 1
            await self._back_off(attempt, "lost connection to broker", session.closed.result())
            started = time.monotonic()

    def _publish_failed(self, failure: PublishFailure) -> None:
        self.publish_failures.labels(failure.value).inc()

    async def _back_off(self, attempt: int, message: str, error: str) -> None:
        delay = backoff_delay(attempt)
        log.warning(message, extra={"error": error, "attempt": attempt, "retry_in_s": round(delay, 2)})
        await self._sleep_unless_stopping(delay)

    async def _wait_for_close_or_stop(self, session: Session) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({session.closed, stop}, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        finally:
            stop.cancel()
        if self._stopping.is_set():
            await session.close()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- HTTP ------------------------------------------------------------------------------------
    async def _start_http(self) -> None:
        app = web.Application(client_max_size=self.http_max_body_bytes, middlewares=[self._observer.middleware])
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/metrics", self._metrics),
                *self.routes(),
            ]
        )
        settings = self.settings
        # keepalive_timeout closes idle keep-alive connections; the guard handles slow headers.
        self._http = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=30)
        await self._http.setup()
        assert self._http.server is not None
        self._guard = ConnectionGuard(
            self.metrics_prefix, self._http.server, settings.http_max_connections, settings.http_header_timeout
        )
        try:
            self._http_server = await asyncio.get_running_loop().create_server(
                self._guard, settings.http_address, settings.http_port, reuse_address=True
            )
        except OSError as error:
            raise StartupFailed(
                f"cannot listen on {settings.http_address}:{settings.http_port}: {error.strerror}"
            ) from None
        self.http_port = self._http_server.sockets[0].getsockname()[1]
        log.info("http server listening", extra={"http_port": self.http_port})

    http_max_body_bytes = 1024**2

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reason = "not connected to the broker" if not self.connected else self.not_ready_reason()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def run_service(
    service_class: Callable[[SettingsT], BrokerService[SettingsT]],
    settings_class: type[SettingsT],
    section: str,
    env_prefix: str,
    default_config: Path,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, load settings, run until SIGTERM; the process exit code."""
    name = env_prefix.lower()
    parser = argparse.ArgumentParser(prog=name, description=f"jobstack {name}")
    parser.add_argument(
        "--config", type=Path, default=default_config, help=f"config.ini path (default {default_config})"
    )
    arguments = parser.parse_args(argv)
    try:
        settings = load_settings(settings_class, arguments.config, section, env_prefix)
    except ConfigError as error:
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(name, settings.instance_id, settings.log_format, settings.log_level)
    try:
        import uvloop  # optional: a faster event loop where the wheel exists
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_serve(service_class, settings))
    except StartupFailed as error:
        log.error("startup failed", extra={"error": str(error)})
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    log.info("stopped")
    return 0


async def _serve(service_class: Callable[[SettingsT], BrokerService[SettingsT]], settings: SettingsT) -> None:
    service = service_class(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(service.shutdown()))
    await service.run()
