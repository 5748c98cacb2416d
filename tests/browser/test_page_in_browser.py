"""The page as a person uses it, in headless Chromium, against a real UI, engine and broker.

Set UPDATE_DOCS_SCREENSHOT=1 to also write the screenshot the README shows (docs/images/ui-page.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pika
from playwright.sync_api import Locator, Page, expect

from ..services.processes import ROOT, Service
from .conftest import ARTIFACTS, Stack, Watched

RESULT_TIMEOUT_MS = 30_000
OTHER_REGION = "https://jobs.region-2.example.com/"


def home(ui: Service) -> str:
    return f"http://127.0.0.1:{ui.http_port}/"


def open_page(watched: Watched, ui: Service) -> Page:
    page = watched.page
    page.goto(home(ui))
    expect(page.locator("#connection")).to_have_text("Live")
    return page


def row_of(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs tr[data-job-id="{job_id}"]')


def accepted_job_id(page: Page, previous: str = "") -> str:
    """The id of the job the page just submitted, from the rows it marked as this person's."""
    status = page.locator("#submit-status")
    if previous:
        expect(status).not_to_contain_text(previous[:8])
    expect(status).to_contain_text(re.compile(r"accepted: pending|succeeded"))
    short = re.search(r"Job (\w{8})", status.inner_text())
    assert short is not None
    job_id = page.locator(f'#jobs tr.mine[data-job-id^="{short.group(1)}"]').get_attribute("data-job-id")
    assert job_id is not None
    return job_id


def assert_clean(watched: Watched, ui: Service) -> None:
    assert watched.errors == [], watched.errors
    assert watched.hosts() == {f"127.0.0.1:{ui.http_port}"}, watched.requests


def test_a_person_submits_jobs_with_the_keyboard_and_sees_them_succeed(stack: Stack, watched: Watched) -> None:
    page = open_page(watched, stack.ui)
    engine = stack.engine.log_lines()[0]["instance"]

    # Tab reaches the value first (found by its label, as a screen reader names it); Enter submits.
    page.keyboard.press("Tab")
    expect(page.get_by_label("Seconds (0 to 60)")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    first = accepted_job_id(page)
    row = row_of(page, first)
    expect(row.locator("td").nth(1)).to_have_text("pending")
    expect(row.locator("td").nth(1)).to_have_text("succeeded", timeout=RESULT_TIMEOUT_MS)
    expect(row.locator("td").nth(2)).to_have_text(engine)
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^1\.\d\d s$"))
    # The outcome replaces "accepted: pending" in the live region that announced the submission.
    expect(page.locator("#submit-status")).to_have_text(re.compile(rf"^Job {first[:8]} succeeded in 1\.\d\d s\.$"))

    # Two more Tabs reach "Random job" (after Submit); Space presses it.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Random job (1 to 2 s)")).to_be_focused()
    page.keyboard.press("Space")
    second = accepted_job_id(page, previous=first)
    expect(row_of(page, second).locator("td").nth(1)).to_have_text("succeeded", timeout=RESULT_TIMEOUT_MS)

    # The table has named column headers; the queue panel: one engine, nothing waits or is pending.
    headers = page.get_by_role("columnheader")
    expect(headers).to_have_text(["Job", "State", "Engine", "Duration", "Result"])
    expect(page.locator("#queue-consumers")).to_have_text("1")
    expect(page.locator("#queue-ready")).to_have_text("0")
    expect(page.locator("#queue-pending")).to_have_text("0")
    page.locator("#job-value").focus()  # the focus ring shows in the screenshot
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "ui-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "images" / "ui-page.png")
    assert_clean(watched, stack.ui)


def test_a_value_out_of_range_is_explained_and_nothing_is_sent(stack: Stack, watched: Watched) -> None:
    page = open_page(watched, stack.ui)
    page.locator("#job-value").fill("61")
    page.locator("#submit-value").click()
    expect(page.locator("#submit-status")).to_have_text("Enter a whole number of seconds from 0 to 60.")
    expect(page.locator("#job-value")).to_be_focused()
    assert not [url for url in watched.requests if url.endswith("/jobs")]
    assert_clean(watched, stack.ui)


def test_a_forged_result_is_shown_as_text_and_runs_nothing(stack: Stack, watched: Watched) -> None:
    # A UI of its own on a vhost without an engine, so that the forged result is the job's first.
    vhost_url = stack.broker.add_vhost("page-forged")
    ui = stack.start_ui(vhost_url)
    try:
        page = open_page(watched, ui)
        status, answer = ui.request("POST", "/jobs", {"type": "integer", "value": 0})
        assert status == 202
        job_id = answer["job_id"]
        expect(row_of(page, job_id).locator("td").nth(1)).to_have_text("pending")
        engine = '<img src="http://203.0.113.7/x.png" onerror="alert(1)">'
        error = "<script>alert(2)</script>"
        forged = {"job_id": job_id, "status": "failed", "engine": engine, "error": error}
        connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
        properties = pika.BasicProperties(correlation_id=job_id, headers={"x-jobstack-status": "failed"})
        connection.channel().basic_publish("job-exchange", "result", json.dumps(forged).encode(), properties)
        connection.close()
        row = row_of(page, job_id)
        expect(row.locator("td").nth(1)).to_have_text("failed")
        expect(row.locator("td").nth(2)).to_have_text(engine)
        expect(row.locator("td").nth(4)).to_have_text(error)
        assert page.locator("#jobs img, #jobs script").count() == 0
        assert_clean(watched, ui)
    finally:
        ui.stop()


def test_a_drained_region_shows_where_to_submit_and_still_shows_jobs(stack: Stack, watched: Watched) -> None:
    drained = stack.start_ui(drain_to_url=OTHER_REGION)
    try:
        page = open_page(watched, drained)
        banner = page.locator("#drained")
        expect(banner).to_be_visible()
        expect(banner.get_by_role("link")).to_have_attribute("href", OTHER_REGION)
        expect(page.locator("#job-value")).to_be_disabled()
        expect(page.locator("#submit-random")).to_be_disabled()
        # The region's jobs still show, here from the other replica's view of the same stream.
        status, answer = stack.ui.request("POST", "/jobs", {"type": "integer", "value": 0})
        assert status == 202
        expect(row_of(page, answer["job_id"]).locator("td").nth(1)).to_have_text("succeeded", timeout=RESULT_TIMEOUT_MS)
        assert_clean(watched, drained)
    finally:
        drained.stop()
