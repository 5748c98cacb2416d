"""bench.compare: every stack runs every job on one private broker and gets a row; figures are printed, never judged."""

from __future__ import annotations

import importlib.util

import pytest

from bench import compare
from bench.baselines.common import InFlight, check_finished

from .benchrun import run_bench, run_bench_failing

N = 50


def test_every_stack_completes_every_job_and_gets_a_row_with_ratios() -> None:
    stdout, lines = run_bench("bench.compare", "--n", str(N), "--window", "10", "--warmup", "0")
    header, *rows = lines

    context = header["context"]
    assert {"date", "machine", "cpu_model", "cpus", "load_average_1m", "quiet"} <= context.keys()
    assert context["cpus"] >= 1 and isinstance(context["quiet"], bool)
    assert header["broker"].startswith("RabbitMQ ")
    assert header["versions"]["celery"] != "not installed"

    assert [row["stack"] for row in rows] == list(compare.STACKS)
    for row in rows:
        assert row["n"] == N  # the command exits non-zero unless every job of every stack completed
        assert row["jobs_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        cpu = row["cpu_s_per_1k_jobs"]
        assert cpu["machine"] > 0 and cpu["stack"] > 0 and cpu["broker"] is not None
        assert "start-up included" in row["cpu_basis"]
        assert row["method"]

    jobstack = rows[0]
    assert jobstack["jobstack_ratio"] == {"jobs_per_s": 1.0, "p99_ms": 1.0, "cpu_machine": 1.0}
    for row in rows[1:]:
        assert row["jobstack_ratio"]["jobs_per_s"] == round(jobstack["jobs_per_s"] / row["jobs_per_s"], 2)

    table = stdout.split("\n{", 1)[0]
    assert table.splitlines()[0].split()[:4] == ["stack", "jobs/s", "p50", "ms"]
    for stack in compare.STACKS:
        assert f"  {stack}: " in table  # each stack's method is in the notes
    assert "broker INCLUDED" in table
    assert "quiet (1-min load" in table


def test_an_unknown_stack_is_refused_before_any_broker_starts() -> None:
    done = run_bench_failing("bench.compare", "--stacks", "jobstack,rq")
    assert done.returncode == 2
    assert "--stacks: unknown rq" in done.stderr


def test_a_warmup_not_smaller_than_n_is_refused() -> None:
    done = run_bench_failing("bench.compare", "--n", "100", "--warmup", "100")
    assert done.returncode == 2
    assert "--warmup < --n" in done.stderr


def test_missing_baselines_are_named_with_the_command_that_installs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "dramatiq" else real_find_spec(name))
    with pytest.raises(SystemExit, match=r"dramatiq not installed; run: .*pip install -r bench/requirements.txt"):
        compare.check_baselines(["jobstack", "celery", "dramatiq"])


def test_a_run_missing_results_fails_instead_of_reporting_figures() -> None:
    flight = InFlight(n=3, window=2)
    for job_id in ("a", "b"):
        flight.submitting(job_id)
    assert not flight.wants_more()  # the window is full
    flight.answered("a")
    flight.answered("a")  # a duplicate result counts once
    flight.answered("b", ok=False)
    flight.submitting("c")
    assert not flight.done
    with pytest.raises(SystemExit, match="only 1 of 3 results came back"):
        check_finished(flight, "pika")
    flight.answered("c")
    assert flight.done and check_finished(flight, "pika")["failed"] == 1
