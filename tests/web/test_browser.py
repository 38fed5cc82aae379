"""The search page in a real browser (Debian's chromium through Playwright) against a real
`mmrag serve`, with every request outside the server aborted: unlock with the token, search,
see thumbnails, open a page, move with the keyboard, play a recording from its start time,
filter, and see the empty and error states. Each step is screenshotted into the tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.browser import browser_page, chromium_path, search, wait_for
from tests.web.conftest import TOKEN, Server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="needs Debian's chromium (apt-get install -y chromium)"
    ),
]

PAGE_Q = "what does inverter error code E04 mean"
AUDIO_Q = "never unplug the router during the firmware update"


def _active(page) -> str:
    return page.evaluate(
        "() => { const a = document.activeElement; return a.dataset.itemId || a.id || a.tagName; }"
    )


def test_search_page_end_to_end(server: Server, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with browser_page(server.url) as (page, external, errors):
        page.goto(server.url + "/")
        wait_for(page, "document.body.dataset.ready === 'true'", what="the page to find the index ready")
        assert _active(page) == "q", "the query box has the focus"
        page.screenshot(path=shots / "01-start.png")

        # a token-protected server: the first search asks for the token, then runs
        search(page, PAGE_Q)
        assert page.is_visible("#auth-form") and _active(page) == "token"
        page.screenshot(path=shots / "02-token.png")
        page.fill("#token", "wrong")
        page.press("#token", "Enter")
        wait_for(page, "document.querySelector('#auth-error').textContent", what="wrong-token message")
        assert "Wrong token" in page.inner_text("#auth-error")
        page.fill("#token", TOKEN)
        page.press("#token", "Enter")
        wait_for(
            page, "document.querySelectorAll('#results article').length > 0", what="results after unlocking"
        )

        # results with thumbnails, the matched words marked, and why each matched
        first = page.locator("#results article").first
        assert "SunVolt" in first.inner_text() and "page 4" in first.inner_text()
        wait_for(
            page, "document.querySelector('#results article .thumb img').naturalWidth > 0", what="a thumbnail"
        )
        marks = [m.lower() for m in page.locator("#results article").first.locator("mark").all_inner_texts()]
        assert "error" in marks and "inverter" in marks
        why = first.locator(".why").inner_text()
        assert "MaxSim" in why and "plaid #" in why and "BM25 #" in why
        assert "results in" in page.inner_text("#status")
        assert page.url.endswith("/?q=what+does+inverter+error+code+E04+mean")
        page.screenshot(path=shots / "03-results.png")

        # keyboard: from the box down into the results and back up
        page.focus("#q")
        page.keyboard.press("ArrowDown")
        items = page.locator("#results article")
        first_id = items.nth(0).get_attribute("data-item-id")
        assert _active(page) == first_id
        page.keyboard.press("ArrowDown")
        assert _active(page) == items.nth(1).get_attribute("data-item-id")
        page.keyboard.press("ArrowUp")
        assert _active(page) == first_id

        # Enter on a result opens its full page; Esc closes and gives the focus back
        page.keyboard.press("Enter")
        wait_for(
            page,
            "document.querySelector('#viewer').open && document.querySelector('#viewer-img').naturalWidth > 0",
            what="the full page",
        )
        assert page.evaluate("() => document.querySelector('#viewer-img').naturalWidth") > page.evaluate(
            "() => document.querySelector('#results article .thumb img').naturalWidth"
        )
        assert "page 4" in page.inner_text("#viewer-title")
        page.screenshot(path=shots / "04-page.png")
        page.keyboard.press("Escape")
        wait_for(page, "!document.querySelector('#viewer').open", what="the viewer to close")
        assert _active(page) == first_id
        # a click on the thumbnail opens it as well
        first.locator(".thumb").click()
        wait_for(page, "document.querySelector('#viewer').open", what="the viewer from a click")
        page.keyboard.press("Escape")

        # a recording plays from the start of the matching window
        search(page, AUDIO_Q, modality="segment", source="audio/")
        hit = page.locator("#results article").first
        assert hit.get_attribute("data-modality") == "segment"
        where = hit.locator(".where").inner_text()
        start = page.evaluate("() => document.querySelector('#results article audio').src")
        assert "#t=" in start
        start_s = float(start.split("#t=")[1])
        assert start_s > 0 and where.startswith(f"0:{int(start_s):02d}")
        hit.locator("button.play").click()
        wait_for(
            page,
            "(() => { const a = document.querySelector('#results article audio'); "
            f"return !a.paused && a.currentTime > {start_s} + 0.3; }})()",
            timeout=30,
            what="the audio to play",
        )
        t = page.evaluate("() => document.querySelector('#results article audio').currentTime")
        assert start_s <= t < start_s + 10, (start_s, t)
        page.screenshot(path=shots / "05-audio.png")
        page.evaluate("() => document.querySelector('#results article audio').pause()")

        # a filtered search: only report pages
        search(page, "revenue by region", modality="page", source="reports/")
        sources = page.locator("#results article .title").all_inner_texts()
        assert sources and all(s.startswith("reports/") for s in sources)
        assert "source: reports/" in page.inner_text("#status")
        page.screenshot(path=shots / "06-filtered.png")

        # empty state: says so, and offers to drop the filters
        search(page, "inverter error code", source="nothing-here/")
        assert page.get_attribute("#notice", "data-state") == "empty"
        assert (
            "No results for" in page.inner_text("#notice") and page.locator("#results article").count() == 0
        )
        page.screenshot(path=shots / "07-empty.png")
        page.click("#clear-filters")
        wait_for(
            page,
            "document.querySelectorAll('#results article').length > 0",
            what="results without the filters",
        )

        # error state: the server's message, shown as an alert
        search(page, "   ")
        assert page.get_attribute("#notice", "data-state") == "error"
        assert page.get_attribute("#notice", "role") == "alert"
        assert "query is empty" in page.inner_text("#notice")
        page.screenshot(path=shots / "08-error.png")

        # the address bar works too, and Back restores the previous search
        page.goto(server.url + "/?q=reset+the+router&modality=segment")
        wait_for(
            page, "document.querySelectorAll('#results article').length > 0", what="a search from the URL"
        )
        assert page.input_value("#q") == "reset the router" and page.input_value("#modality") == "segment"

        assert not errors, errors
        assert not external, f"the page tried to reach other hosts: {external}"
    assert len(list(shots.glob("*.png"))) == 8


def test_api_docs_render_offline(server: Server, tmp_path: Path) -> None:
    with browser_page(server.url) as (page, external, errors):
        page.goto(server.url + "/docs")
        wait_for(page, "document.querySelector('.swagger-ui .info .title')", what="Swagger UI")
        wait_for(page, "document.querySelectorAll('.opblock').length >= 5", what="the operations")
        assert "mmrag" in page.inner_text(".swagger-ui .info .title")
        page.screenshot(path=tmp_path / "docs.png")
        page.goto(server.url + "/redoc")
        wait_for(page, "document.querySelector('.api-content h1')", what="ReDoc")
        assert "mmrag" in page.inner_text(".api-content h1")
        page.screenshot(path=tmp_path / "redoc.png")
        assert not errors, errors
        # ReDoc's sidebar asks a public CDN for a logo; the CSP blocks it before the network is
        # touched, so nothing may have got as far as the network layer
        assert not external, external


def test_page_draws_the_ocr_boxes_of_an_image_hit(server: Server, tmp_path: Path) -> None:
    """The home-network diagram has no text layer: OCR read its labels at ingest and stored the
    word boxes beside the image; the result links them (``boxes_url``) and the page draws every
    box on the full image and marks the ones the query names."""
    with browser_page(server.url) as (page, external, errors):
        page.context.request.post(server.url + "/auth", data={"token": TOKEN})
        page.goto(server.url + "/?q=" + "modem router switch diagram&modality=image")
        wait_for(page, "document.querySelectorAll('#results article').length > 0", what="results")
        page.locator("#results article", has_text="home-network-diagram").first.locator(".thumb").click()
        wait_for(page, "document.querySelectorAll('#viewer-boxes rect').length > 0", what="the boxes")
        n_boxes = page.locator("#viewer-boxes rect").count()
        hits = page.eval_on_selector_all(
            "#viewer-boxes rect.hit", "els => els.map(e => e.querySelector('title').textContent)"
        )
        assert n_boxes >= 5 and {"modem", "router", "switch"} <= {h.lower().strip(",.:") for h in hits}
        assert len(hits) < n_boxes  # "NAS", "Desktop", ... are drawn but not marked
        # the overlay covers the image exactly, so a box sits on its word
        img_box, svg_box = (
            page.locator("#viewer-img").bounding_box(),
            page.locator("#viewer-boxes").bounding_box(),
        )
        assert abs(img_box["width"] - svg_box["width"]) < 2 and abs(img_box["height"] - svg_box["height"]) < 2
        assert "OCR text boxes" in page.inner_text("#viewer-note")
        page.screenshot(path=tmp_path / "boxes.png")
        assert not errors and not external
