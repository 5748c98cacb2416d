"""The page for people at `/`: plain files shipped in the package, and a live stream of job changes.

The page is static HTML, CSS and JavaScript from `static/` (no build step, nothing fetched from
another host); the HTML is rendered once at startup with the few settings the page needs. Its
live part is `GET /events`, a server-sent event stream fed by the user_interface's results view:

- `snapshot`: the recent jobs and the queue, sent first (and again after a burst);
- `jobs`: the jobs that became pending or finished since the last event, at most every 0.25 s;
- `queue`: the jobs queue's ready count and consumers (a passive declare), every 2 s.

While nobody follows the stream, the view's hot path pays one None check per job; while someone
does, it pays one dict insert (JobView.on_change). Rows are built, and result bodies parsed,
only when an event goes out, for at most RECENT_JOBS jobs.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import string
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from .http import json_error
from .protocol import InvalidResult, parse_result, printable
from .results import MAX_RECORD_BYTES, Finished, JobView

log = logging.getLogger("jobstack.page")

STATIC = Path(__file__).with_name("static")
CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only this origin, and no inline script or style: injected markup could not run or call out.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

RECENT_JOBS = 20  # rows on the page
FLUSH_SECONDS = 0.25  # changed jobs go out at most this often
QUEUE_POLL_SECONDS = 2.0
QUEUE_PROBE_TIMEOUT_SECONDS = 5.0
KEEPALIVE_SECONDS = 15.0  # a comment line, so proxies keep an idle stream and dead clients are noticed
RECONNECT_MILLISECONDS = 3000  # the browser's EventSource waits this long before it reconnects
WRITE_TIMEOUT_SECONDS = 10.0  # a client that takes nothing for this long is dropped
MAX_QUEUED_BYTES = 256 * 1024  # per client; a client this far behind is dropped (it reconnects)

# () -> (ready, consumers) of the jobs queue, None when it cannot be known now.
QueueProbe = Callable[[], Awaitable[tuple[int, int] | None]]
# (transport, callback) -> False if the connection is gone already (ConnectionGuard.call_when_lost).
LossWatch = Callable[[Any, Callable[[], None]], bool]


class PageFiles:
    """The page and its files, read once; the HTML carries the settings the script needs."""

    def __init__(self, max_value: int, random_min: int, random_max: int, drain_to_url: str) -> None:
        template = string.Template((STATIC / "index.html").read_text(encoding="utf-8"))
        self.index = template.substitute(
            max_value=max_value,
            random_min=random_min,
            random_max=random_max,
            drained="true" if drain_to_url else "false",
            drain_hidden="" if drain_to_url else "hidden",
            form_disabled="disabled" if drain_to_url else "",
            drain_url=html.escape(drain_to_url, quote=True),
        ).encode()
        self.files = {
            path.name: (path.read_bytes(), CONTENT_TYPES[path.suffix])
            for path in sorted(STATIC.iterdir())
            if path.suffix in CONTENT_TYPES
        }

    async def page(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.index, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def static(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            return json_error(404, "no such file")
        body, content_type = found
        return web.Response(body=body, headers={**PAGE_HEADERS, "Content-Type": content_type})


def job_row(job_id: str, state: Finished | str) -> dict[str, Any]:
    """What the page shows for one job. Result bodies come from the stream: every field is checked."""
    row: dict[str, Any] = {"job_id": job_id, "state": "pending", "engine": None, "duration_seconds": None}
    row.update(finished_at=None, error=None)
    if not isinstance(state, Finished):
        return row
    row["state"] = state.status
    try:
        result = parse_result(state.body, MAX_RECORD_BYTES)
    except InvalidResult:
        return row
    engine, error = result.get("engine"), result.get("error")
    row["engine"] = printable(engine, 100) if isinstance(engine, str) else None
    row["error"] = printable(error, 300) if isinstance(error, str) else None
    started, finished = _timestamp(result.get("started_at")), _timestamp(result.get("finished_at"))
    if finished is not None:
        row["finished_at"] = finished.isoformat()
        if started is not None and finished >= started:
            row["duration_seconds"] = round((finished - started).total_seconds(), 3)
    return row


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def event(name: str, data: Any) -> bytes:
    """One server-sent event; json.dumps escapes newlines, so data is always a single line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventClient:
    """One open event stream: what is waiting to be written to it, bounded."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self.closed = False

    def push(self, chunk: bytes) -> None:
        if self.closed:
            return
        if self._queued + len(chunk) > MAX_QUEUED_BYTES:
            log.info("dropping an event stream that does not keep up")
            self.close()
            return
        self._chunks.append(chunk)
        self._queued += len(chunk)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> bytes | None:
        """The next chunk to write, or None once the stream is to end."""
        while not self._chunks and not self.closed:
            self._wake.clear()
            await self._wake.wait()
        if self.closed:
            return None
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        return chunk


class EventHub:
    """The clients of GET /events and the one task that feeds them while there are any."""

    def __init__(
        self,
        view: JobView,
        max_clients: int,
        probe_queue: QueueProbe,
        pending_count: Callable[[], int | None],
        retry_after_seconds: int,
    ) -> None:
        self.view = view
        self.max_clients = max_clients
        self._probe_queue = probe_queue
        self._pending_count = pending_count
        self._retry_after = str(retry_after_seconds)
        self.clients: set[EventClient] = set()
        # Jobs changed since the last flush, in order; more than RECENT_JOBS means "send a snapshot".
        self._changed: dict[str, None] = {}
        self._queue: dict[str, Any] = {"ready": None, "consumers": None, "pending": None}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- the view's notification (hot path: O(1)) --------------------------------------------
    def job_changed(self, job_id: str) -> None:
        changed = self._changed
        if len(changed) <= RECENT_JOBS:
            changed[job_id] = None

    # -- clients --------------------------------------------------------------------------------
    def _join(self) -> EventClient | None:
        if self._closing or len(self.clients) >= self.max_clients:
            return None
        client = EventClient()
        self.clients.add(client)
        if len(self.clients) == 1:
            self._changed.clear()
            self.view.on_change = self.job_changed
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._feed())
        return client

    def _leave(self, client: EventClient) -> None:
        client.close()
        self.clients.discard(client)
        if not self.clients:
            self.view.on_change = None

    def close_all(self) -> None:
        """The service is stopping: end every stream (the browsers reconnect to another replica)."""
        self._closing = True
        for client in list(self.clients):
            client.close()

    async def stream(self, request: web.Request, call_when_lost: LossWatch) -> web.StreamResponse:
        """GET /events: 503 beyond max_clients, else a stream until the client or the service goes."""
        if self._closing:
            return json_error(503, "the user_interface is stopping", {"Retry-After": "1"})
        client = self._join()
        if client is None:
            return json_error(
                503,
                f"{self.max_clients} event streams are open, the most this replica serves; retry later",
                {"Retry-After": self._retry_after},
            )
        response = web.StreamResponse(
            headers={**PAGE_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        try:
            if not call_when_lost(request.transport, client.close):
                return response
            await response.prepare(request)
            client.push(f"retry: {RECONNECT_MILLISECONDS}\n\n".encode() + self._snapshot())
            while (chunk := await client.next()) is not None:
                await asyncio.wait_for(response.write(chunk), timeout=WRITE_TIMEOUT_SECONDS)
        except (ConnectionError, ClientConnectionResetError, TimeoutError):
            pass  # the client went away or stopped reading
        finally:
            self._leave(client)
        return response

    # -- feeding --------------------------------------------------------------------------------
    def _broadcast(self, chunk: bytes) -> None:
        for client in list(self.clients):
            client.push(chunk)

    def _snapshot(self) -> bytes:
        jobs = [job_row(job_id, state) for job_id, state in self.view.recent(RECENT_JOBS)]
        return event("snapshot", {"jobs": jobs, "queue": self._queue})

    def _flush(self) -> None:
        changed = self._changed
        if not changed:
            return
        if len(changed) > RECENT_JOBS:
            chunk = self._snapshot()  # a burst: the newest jobs as a whole are what the page shows
        else:
            rows = []
            for job_id in changed:
                state = self.view.lookup(job_id)
                if state is not None:
                    rows.append(job_row(job_id, state))
            chunk = event("jobs", {"jobs": rows})
        changed.clear()
        self._broadcast(chunk)

    async def _feed(self) -> None:
        """Runs while anyone listens: changes and keep-alives on one beat, the queue on another."""
        await asyncio.gather(self._flush_changes(), self._poll_queue())

    @property
    def _listened(self) -> bool:
        return bool(self.clients) and not self._closing

    async def _flush_changes(self) -> None:
        loop = asyncio.get_running_loop()
        next_keepalive = loop.time() + KEEPALIVE_SECONDS
        while self._listened:
            await asyncio.sleep(FLUSH_SECONDS)
            self._flush()
            if loop.time() >= next_keepalive:
                self._broadcast(b": keepalive\n\n")
                next_keepalive = loop.time() + KEEPALIVE_SECONDS

    async def _poll_queue(self) -> None:
        probe: asyncio.Future[tuple[int, int] | None] | None = None
        while self._listened:
            # One probe at a time: a broker that does not answer (a blocked connection) must not
            # collect a queue of declares on the channel.
            if probe is None or probe.done():
                probe = asyncio.ensure_future(self._probe_queue())
            try:
                depth = await asyncio.wait_for(asyncio.shield(probe), timeout=QUEUE_PROBE_TIMEOUT_SECONDS)
            except TimeoutError:  # flow control, an overloaded broker: the page shows "unknown"
                depth = None
            except Exception:
                log.warning("cannot read the jobs queue's depth", exc_info=True)
                depth = None
            ready, consumers = depth if depth is not None else (None, None)
            self._queue = {"ready": ready, "consumers": consumers, "pending": self._pending_count()}
            self._broadcast(event("queue", self._queue))
            await asyncio.sleep(QUEUE_POLL_SECONDS)
