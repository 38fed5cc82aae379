"""Debian's chromium driven by Playwright (its own browser download cannot work offline).

Shared by the browser tests and ``docs/screenshot.py``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser_page(
    origin: str, *, width: int = 1280, height: int = 860
) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page whose requests outside ``origin`` are aborted and recorded (the product must work
    with no network at all); yields (page, external requests, page errors)."""
    from playwright.sync_api import sync_playwright

    external: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})

            def gate(route: Any) -> None:
                url = route.request.url
                if url.startswith((origin + "/", "data:", "blob:")):
                    route.continue_()
                else:
                    external.append(url)
                    route.abort()

            context.route("**/*", gate)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, external, errors
        finally:
            browser.close()


def wait_for(page: Any, js: str, timeout: float = 30.0, what: str = "") -> Any:
    """Poll a JS expression until truthy. (``page.wait_for_function`` evaluates a string, which
    the page's Content-Security-Policy forbids: that is the point of the policy.)"""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(f"() => ({js})")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or js} (last value {value!r})")


def search(page: Any, query: str, *, modality: str = "", source: str = "") -> None:
    """Fill the form, press Enter, wait until results, a notice or the token form show."""
    page.fill("#q", query)
    page.select_option("#modality", modality)
    page.fill("#source", source)
    page.press("#q", "Enter")
    wait_for(
        page,
        "document.querySelector('#status').textContent !== 'Searching…' && "
        "(document.querySelector('#results article') || !document.querySelector('#notice').hidden || "
        "!document.querySelector('#auth-form').hidden)",
        what="search to finish",
    )
