"""Small pure functions whose behaviour the failure tests rely on."""

from __future__ import annotations

from jobstack.engine import delivery_attempt
from jobstack.service import BACKOFF_CAP_SECONDS, backoff_delay


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    first = [backoff_delay(1) for _ in range(200)]
    assert all(0.25 <= delay <= 0.5 for delay in first)
    assert len({round(delay, 6) for delay in first}) > 100  # jittered, not in lock step
    assert all(2.0 <= backoff_delay(4) <= 4.0 for _ in range(100))
    assert all(BACKOFF_CAP_SECONDS / 2 <= backoff_delay(50) <= BACKOFF_CAP_SECONDS for _ in range(100))


def test_delivery_attempt_reads_the_quorum_queue_counters() -> None:
    assert delivery_attempt(None, redelivered=False) == 1
    assert delivery_attempt({"x-delivery-count": 2}, redelivered=True) == 3
    # RabbitMQ 4.x: a consumer crash raises x-acquired-count, not x-delivery-count.
    assert delivery_attempt({"x-delivery-count": 0, "x-acquired-count": 4}, redelivered=True) == 5
    assert delivery_attempt({}, redelivered=True) == 2
