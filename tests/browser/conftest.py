"""A real browser for the page: Debian's Chromium, driven by playwright (no browser download).

One private RabbitMQ, one engine and one user_interface serve the whole module; every test gets
a fresh browser page that records its console errors and every request it makes.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from tools import chromium
from tools.rabbitmq_local import Broker

from ..services.processes import ROOT, Service

# Test artifacts (screenshots), beside the JUnit files of `make test`; gitignored.
ARTIFACTS = ROOT / "build" / "test-results"


@dataclass
class Stack:
    broker: Broker
    amqp_url: str
    engine: Service
    ui: Service
    log_dir: Path

    def start_ui(self, amqp_url: str | None = None, **settings: object) -> Service:
        return Service("user_interface", amqp_url or self.amqp_url, self.log_dir, **settings).start()


@dataclass
class Watched:
    """A page and what it did: console errors, uncaught exceptions, dialogs and requests."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def hosts(self) -> set[str]:
        return {urllib.parse.urlsplit(url).netloc for url in self.requests}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    broker = Broker(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    log_dir = tmp_path_factory.mktemp("services")
    started: list[Service] = []
    try:
        url = broker.add_vhost("page")
        # Random jobs of 1 or 2 s, so that a person (and this test) sees them pending, then done.
        engine = Service("engine", url, log_dir, instance_id="engine-1").start()
        started.append(engine)
        ui = Service("user_interface", url, log_dir, loop_min_value=1, loop_max_value=2).start()
        started.append(ui)
        yield Stack(broker, url, engine, ui, log_dir)
    finally:
        for service in started:
            service.stop()
        broker.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1000, "height": 620}, device_scale_factor=1)
    page = context.new_page()
    seen = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(f"console: {message.text}")

    def on_request(request: Request) -> None:
        seen.requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
    page.on("dialog", lambda dialog: (seen.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("request", on_request)
    yield seen
    context.close()
