"""Debian's Chromium as the tests and tools drive it with playwright: never a downloaded browser.

The flags keep Chromium off the network on its own (no updates, sync or background requests,
which this machine's closed network would refuse) and let it run headless as root.
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: Any) -> Any:
    """A headless Debian Chromium from a started playwright (sync or async API alike)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
