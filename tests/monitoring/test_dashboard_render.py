"""Every panel of the dashboard shows data from real services (tools/render_dashboard.py).

One run of the renderer, at a small size (one region, a short load), against a private RabbitMQ,
two engines, a user_interface and Prometheus. The dashboard it reads is the committed one plus
one crafted panel whose second query matches nothing (the jobs queue misspelt): the metric exists,
so only data shows the mistake. That panel must be the only one reported empty, and it must fail
the run; every real panel's every query must return a series with data.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.render_dashboard import finite_points, rate_interval, series_with_data, substitute

from .queries import ROOT, dashboard

RUN_SECONDS = 10
# Starting the stack, the load, drawing and stopping: far more than a run needs on a busy machine.
RUN_TIMEOUT = 300
MISSPELT = 'max by (region) (rabbitmq_detailed_queue_messages_ready{region=~"$region", queue="jobstack.job"})'


def with_broken_panel(board: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The board plus one panel under the others: query A reads real data, B a queue that does not exist."""
    bottom = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in board["panels"])
    broken = {
        "id": max(panel["id"] for panel in board["panels"]) + 1,
        "type": "timeseries",
        "title": "Crafted: a misspelt queue",
        "gridPos": {"h": 6, "w": 12, "x": 0, "y": bottom},
        "fieldConfig": {"defaults": {"unit": "short"}},
        "targets": [
            {"refId": "A", "expr": 'max by (region) (jobstack_engine_broker_connected{region=~"$region"})'},
            {"refId": "B", "expr": MISSPELT, "legendFormat": "{{region}} ready"},
        ],
    }
    return {**board, "panels": [*board["panels"], broken]}, broken


@dataclass
class Run:
    returncode: int
    output: str
    report: dict[str, Any]
    png: Path
    page: Path


def render(*args: str, stop_after: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the renderer as a user does; with stop_after, send SIGTERM once that line is printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.render_dashboard", "--regions", "1", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # A run that hangs gets SIGTERM, which still lets it stop what it started (SIGKILL would not).
    hung = threading.Event()

    def stop_hung_run() -> None:
        hung.set()
        process.send_signal(signal.SIGTERM)

    watchdog = threading.Timer(RUN_TIMEOUT, stop_hung_run)
    watchdog.start()
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if stop_after is not None and line.startswith(stop_after):
                process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        watchdog.cancel()
    output = "".join(lines)
    assert not hung.is_set(), f"still running after {RUN_TIMEOUT} s, stopped with SIGTERM:\n{output}"
    return subprocess.CompletedProcess(process.args, process.returncode, output)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("render")
    board, _ = with_broken_panel(dashboard())
    board_path = base / "dashboard.json"
    board_path.write_text(json.dumps(board))
    png, page, report = base / "dashboard.png", base / "dashboard.html", base / "report.json"
    done = render(
        *("--seconds", str(RUN_SECONDS), "--dashboard", str(board_path)),
        *("--output", str(png), "--html", str(page), "--report", str(report)),
    )
    assert report.exists(), f"no report; exit {done.returncode}:\n{done.stdout}"
    return Run(done.returncode, done.stdout, json.loads(report.read_text()), png, page)


def chart_panel_ids(board: dict[str, Any]) -> set[int]:
    return {panel["id"] for panel in board["panels"] if panel.get("targets")}


def test_every_query_of_every_panel_returns_data_from_real_services(run: Run) -> None:
    real = dashboard()
    reported = {panel["id"]: panel for panel in run.report["panels"]}
    assert chart_panel_ids(real) <= set(reported), "a panel of the dashboard was not evaluated"
    empty = {
        f"{reported[panel_id]['title']} {target['refId']}": target["expr"]
        for panel_id in chart_panel_ids(real)
        for target in reported[panel_id]["targets"]
        if target["series_with_data"] < 1
    }
    assert empty == {}, f"panels that show nothing against real services: {empty}\n{run.output}"
    for panel in real["panels"]:
        for target in panel.get("targets", []):
            evaluated = next(t for t in reported[panel["id"]]["targets"] if t["refId"] == target["refId"])
            assert evaluated["points"] > 0 and "$" not in evaluated["expr"], (panel["title"], evaluated)


def test_a_query_that_matches_nothing_is_reported_and_fails_the_run(run: Run) -> None:
    _, broken = with_broken_panel(dashboard())
    assert run.report["empty"] == [f"panel {broken['id']} {broken['title']!r} B"], run.output
    assert run.returncode == 1, run.output
    assert re.search(r"B: 0 series \(0 with data\), 0 points\s+<- NO DATA", run.output), run.output
    crafted = next(panel for panel in run.report["panels"] if panel["id"] == broken["id"])
    assert [target["series_with_data"] > 0 for target in crafted["targets"]] == [True, False]


def test_the_page_draws_every_panel_without_fetching_anything_and_the_png_is_written(run: Run) -> None:
    page = run.page.read_text()
    for panel in dashboard()["panels"]:
        assert f">{panel['title']}<" in page, panel["title"]
    assert page.count("<polyline") >= len(chart_panel_ids(dashboard())), "a line per panel at least"
    assert "No data" not in page.split("Crafted")[0], "a real panel was drawn empty"
    assert not re.search(r"\b(src|href)=|url\(|@import|<script", page), "the page must need nothing else"
    assert run.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.png.stat().st_size > 20_000, "a screenshot of a whole dashboard, not a blank page"


def started_processes(output: str) -> tuple[list[int], int, int, Path]:
    """Service and Prometheus pids, the broker's process group and epmd port, and the work dir, as printed."""
    pids = [int(pid) for pid in re.findall(r"^started: \S+ pid=(\d+)", output, re.MULTILINE)]
    broker = re.search(r"^started: rabbitmq pgid=(\d+) epmd port (\d+)", output, re.MULTILINE)
    work = re.search(r"^work dir: (\S+)", output, re.MULTILINE)
    assert broker and work and pids, output
    return pids, int(broker.group(1)), int(broker.group(2)), Path(work.group(1))


def leftovers(output: str) -> list[str]:
    """What the run started and is still there: a process, the broker's group, its epmd, the work dir."""
    pids, broker_group, epmd_port, work = started_processes(output)
    left = [f"pid {pid}" for pid in pids if Path(f"/proc/{pid}").exists()]
    epmd = f"ERL_EPMD_PORT={epmd_port}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            group = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if group == broker_group or (epmd in environ and (proc / "comm").read_text().strip() == "epmd"):
            left.append(f"pid {proc.name} ({(proc / 'comm').read_text().strip()})")
    if work.exists():
        left.append(str(work))
    return left


def test_a_run_leaves_no_process_and_no_files_behind(run: Run) -> None:
    assert leftovers(run.output) == []


def test_sigterm_while_an_engine_is_paused_stops_everything_it_started(tmp_path: Path) -> None:
    done = render("--seconds", "8", "--output", str(tmp_path / "d.png"), stop_after="load: SIGSTOP")
    assert done.returncode == 128 + signal.SIGTERM, done.stdout
    assert "load: SIGCONT" not in done.stdout, "stopped before the engine was resumed"
    assert leftovers(done.stdout) == []
    assert not (tmp_path / "d.png").exists()


def test_only_finite_samples_count_as_data() -> None:
    assert series_with_data([]) == 0
    assert series_with_data([{"metric": {}, "values": [[1, "NaN"], [2, "+Inf"], [3, "-Inf"]]}]) == 0
    assert series_with_data([{"metric": {}, "values": [[1, "NaN"]]}, {"metric": {}, "values": [[1, "0"]]}]) == 1
    assert finite_points({"metric": {}, "values": [[1, "NaN"], [2, "0.5"], [3, "2"]]}) == 2


def test_grafana_variables_are_substituted_and_an_unknown_one_is_refused() -> None:
    values = {"region": ".*", "__rate_interval": "4s"}
    assert substitute('rate(x{region=~"$region"}[$__rate_interval])', values) == 'rate(x{region=~".*"}[4s])'
    assert substitute("x{region=~'${region}'}", values) == "x{region=~'.*'}"
    with pytest.raises(ValueError, match=r"unknown dashboard variable \$cluster"):
        substitute('x{cluster=~"$cluster"}', values)


def test_the_rate_interval_is_grafanas() -> None:
    # max($__interval + scrape interval, 4 x scrape interval)
    assert rate_interval(step=1, scrape=1) == 4
    assert rate_interval(step=10, scrape=1) == 11
    assert rate_interval(step=15, scrape=15) == 60
