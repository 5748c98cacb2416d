"""What a user_interface knows about jobs: a bounded view built from the results stream.

Every replica reads the same stream (every result and every accepted job), so every replica holds the same
view and can answer GET /jobs/<id> for any job. Pending jobs are never evicted: when there are
max_pending of them, POST /jobs is refused with 429 instead. Finished jobs age out by count and
by time. Result bodies are kept as bytes and parsed only when someone asks for them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Results read before their job record (possible when the two land on different stream
# writers, or for jobs submitted before the window a fresh replica reads) wait here, bounded.
EARLY_RESULTS_KEPT = 4096
# Job and result bodies read from the stream are not parsed beyond this size.
MAX_RECORD_BYTES = 65536


@dataclass(frozen=True, slots=True)
class Finished:
    status: str
    body: bytes
    at: float


class JobView:
    def __init__(self, max_pending: int, max_finished: int, finished_max_age: float) -> None:
        self.max_pending = max_pending
        self.max_finished = max_finished
        self.finished_max_age = finished_max_age
        self.pending: dict[str, float] = {}
        self.finished: OrderedDict[str, Finished] = OrderedDict()
        self._early: OrderedDict[str, Finished] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[Finished]] = {}
        # Called with a job id when the job becomes pending or finished; set only while someone
        # watches (the page's event stream), so that the hot path pays one None check otherwise.
        self.on_change: Callable[[str], None] | None = None

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_pending

    def job_seen(self, job_id: str, now: float) -> Finished | None:
        """Record an accepted job; its Finished record if its result had already been read."""
        if job_id in self.pending or job_id in self.finished:
            return None  # a republished job (at-least-once), or a stream record we already had
        early = self._early.pop(job_id, None) if self._early else None
        if early is not None:
            self._finish(job_id, early)
            return early
        self.pending[job_id] = now
        if self.on_change is not None:
            self.on_change(job_id)
        return None

    def result_seen(self, job_id: str, status: str, body: bytes, now: float) -> bool:
        """Record the first result of a job; False for duplicates and for jobs not (yet) seen."""
        if job_id in self.finished:
            return False  # the engine side is at-least-once: the first result wins
        if self.pending.pop(job_id, None) is None:
            self._early[job_id] = Finished(status, body, now)
            if len(self._early) > EARLY_RESULTS_KEPT:
                self._early.popitem(last=False)
            return False
        self._finish(job_id, Finished(status, body, now))
        return True

    def _finish(self, job_id: str, finished: Finished) -> None:
        self.finished[job_id] = finished
        waiter = self._waiters.pop(job_id, None) if self._waiters else None
        if waiter is not None and not waiter.done():
            waiter.set_result(finished)
        if self.on_change is not None:
            self.on_change(job_id)
        self.expire(finished.at)

    def expire(self, now: float) -> None:
        finished = self.finished
        while finished and (
            len(finished) > self.max_finished or now - next(iter(finished.values())).at > self.finished_max_age
        ):
            finished.popitem(last=False)

    def lookup(self, job_id: str) -> Finished | str | None:
        """The job's Finished record, "pending", or None when the view does not know it."""
        self.expire(time.monotonic())
        finished = self.finished.get(job_id)
        if finished is not None:
            return finished
        return "pending" if job_id in self.pending else None

    def recent(self, count: int) -> list[tuple[str, Finished | str]]:
        """The count jobs seen or finished last, newest first, as lookup() would answer for each.

        Both dicts are in the order their entries were added, so only their last count entries
        are looked at: O(count), whatever the size of the view.
        """
        self.expire(time.monotonic())
        Entry = tuple[float, str, Finished | str]
        pending: Iterator[Entry] = (
            (at, job_id, "pending") for job_id, at in itertools.islice(reversed(self.pending.items()), count)
        )
        finished: Iterator[Entry] = (
            (entry.at, job_id, entry) for job_id, entry in itertools.islice(reversed(self.finished.items()), count)
        )
        newest = heapq.merge(pending, finished, key=lambda item: item[0], reverse=True)
        return [(job_id, state) for _at, job_id, state in itertools.islice(newest, count)]

    def wait(self, job_id: str) -> asyncio.Future[Finished]:
        """A future for the job's result (used by the loop mode and the benchmark, not by HTTP)."""
        future = self._waiters.get(job_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            finished = self.finished.get(job_id)
            if finished is not None:
                future.set_result(finished)
            else:
                self._waiters[job_id] = future
        return future

    def forget_waiter(self, job_id: str) -> None:
        self._waiters.pop(job_id, None)

    def clear(self) -> None:
        """A fresh start (the stream is read again from a time window)."""
        self.pending.clear()
        self.finished.clear()
        self._early.clear()
