"""HTTP hygiene around aiohttp: a connection cap, header and body read timeouts, access log, metrics.

aiohttp has no timeout for a client that sends its request headers slowly, and no cap on open
connections, so each accepted connection is wrapped in a small protocol that forwards to aiohttp's
own and closes the connection when a request's headers are not complete in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

log = logging.getLogger("jobstack.http")

KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
_REFUSED_BODY = b'{"error": "too many connections, retry later"}'
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


class ConnectionGuard:
    """Counts connections, refuses those above the cap, and times out slow request headers."""

    def __init__(
        self, prefix: str, inner: Callable[[], asyncio.Protocol], max_connections: int, header_timeout: float
    ) -> None:
        self._inner = inner
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open: dict[Any, GuardedProtocol] = {}
        self.refused = Counter(f"{prefix}_http_connections_refused", "Connections refused above http_max_connections")
        self.timed_out = Counter(
            f"{prefix}_http_slow_requests_closed", "Connections closed because request headers took too long"
        )

    def __call__(self) -> asyncio.Protocol:
        return GuardedProtocol(self)

    def request_started(self, transport: Any) -> None:
        guarded = self.open.get(transport)
        if guarded is not None:
            guarded.handling = True
            guarded.stop_timer()

    def request_finished(self, transport: Any) -> None:
        guarded = self.open.get(transport)
        if guarded is not None:
            guarded.handling = False

    def call_when_lost(self, transport: Any, callback: Callable[[], None]) -> bool:
        """Call callback once the connection is gone; False (and no call) if it is gone already.

        aiohttp does not cancel a handler whose client went away (and a request without a body
        gets no error either): a long-lived response learns it here, at once, instead of on its
        next failed write.
        """
        guarded = self.open.get(transport)
        if guarded is None:
            return False
        guarded.on_lost.append(callback)
        return True


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.handling = False
        self._timer: asyncio.TimerHandle | None = None
        self.on_lost: list[Callable[[], None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = typing.cast(asyncio.Transport, transport)
        if len(self.guard.open) >= self.guard.max_connections:
            self.guard.refused.inc()
            self.transport.write(_REFUSED)
            self.transport.close()
            return
        self.guard.open[transport] = self
        self.inner = self.guard._inner()
        self.inner.connection_made(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.handling and self._timer is None:
            # The first bytes of a request: its headers must be complete before the timer fires.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.guard.header_timeout, self._expire)
        self.inner.data_received(data)

    def _expire(self) -> None:
        self._timer = None
        if not self.handling and self.transport is not None:
            self.guard.timed_out.inc()
            log.info("closing a connection whose request headers were too slow")
            self.transport.abort()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        if self.transport is not None:
            self.guard.open.pop(self.transport, None)
        if self.inner is not None:
            self.inner.connection_lost(exc)
        callbacks, self.on_lost = self.on_lost, []
        for callback in callbacks:
            callback()


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class RequestObserver:
    """Middleware: access log line and request metrics per route template, JSON errors, no 500 leaks."""

    def __init__(self, prefix: str, guard_of: Callable[[], ConnectionGuard | None]) -> None:
        self._guard_of = guard_of
        self._requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
        )
        self._duration = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        guard = self._guard_of()
        if guard is not None:
            guard.request_started(request.transport)
        try:
            response = await self._answer(request, handler)
        finally:
            if guard is not None:
                guard.request_finished(request.transport)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        elapsed = time.perf_counter() - started
        self._requests.labels(route, method, str(response.status)).inc()
        self._duration.labels(route, method).observe(elapsed)
        log.info(
            "http request",
            extra={
                "method": method,
                "path": request.path[:200],
                "route": route,
                "status": response.status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response

    @staticmethod
    async def _answer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge as error:
            return json_error(413, f"body larger than allowed ({error.text})")
        except web.HTTPException as error:
            if error.status >= 400:
                return json_error(
                    error.status,
                    error.reason,
                    {k: v for k, v in error.headers.items() if k in ("Allow", "Retry-After")},
                )
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error answering a request", extra={"path": request.path[:200]})
            return json_error(500, "internal error")
