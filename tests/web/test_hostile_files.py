"""Hostile corpus files end to end (issue 21): names no terminal or database likes, a document
deleted between two `mmrag index` runs, and recordings that are also HTML pages or scripts, served
by a real `mmrag serve` and opened in a real browser."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from mmrag_assets.lib.ingest.names import escape_name
from tests.hostile_corpus import HOSTILE_NAMES
from tests.web.browser import browser_page, chromium_path
from tests.web.conftest import TOKEN, HostileServed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HIDDEN = ("\n", "\r", "\x1b", "\x07", "\u202e", "\u200b", "\ufeff", "\udcff")


def _get(h: HostileServed, path: str, **params: object) -> httpx.Response:
    return httpx.get(h.server.url + path, params=params, headers=h.server.auth, timeout=60)


def _hit(h: HostileServed, query: str, source_prefix: str = "") -> dict:
    body = {
        "query": query,
        "k": 3,
        **({"filters": {"source_prefix": source_prefix}} if source_prefix else {}),
    }
    r = httpx.post(f"{h.server.url}/search", json=body, headers=h.server.auth, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def test_one_bad_name_never_fails_the_run(hostile_served: HostileServed) -> None:
    """`bad\\xffname.pdf` made `mmrag index` exit 2 in corpus_manifest (DuckDB refused the str);
    now the run succeeds and says every name in its escaped form, one line each."""
    run = hostile_served.index_run
    out = (run.stdout + run.stderr).decode("utf-8", "replace")
    assert run.returncode == 0, out
    assert "names/junk\\xfe\\n\\u202etxt.pdf: " in out  # the quarantined junk, escaped, on one line
    for ch in HIDDEN[2:]:
        assert ch not in out, (ch, out)


@pytest.mark.parametrize("index", range(7))
def test_every_hostile_name_is_indexed_and_served_escaped(hostile_served: HostileServed, index: int) -> None:
    name, word = list(hostile_served.names.items())[index]
    hit = _hit(hostile_served, f"{word} procedure")
    assert hit["source"] == "names/" + escape_name(name), (name, hit["source"])
    assert not any(ch in hit["source"] for ch in HIDDEN)
    img = _get(hostile_served, hit["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"


def test_escaped_names_never_collide() -> None:
    """The escape is lossless: a name holding a literal backslash-x is not the byte it spells."""
    from mmrag_assets.lib.ingest.names import name_bytes

    assert escape_name(b"bad\xffname.pdf") != escape_name(b"bad\\xffname.pdf")
    for name, _ in HOSTILE_NAMES:
        assert name_bytes(escape_name(name)) == name


def test_a_document_deleted_before_the_run_is_served_as_deleted(hostile_served: HostileServed) -> None:
    r = httpx.post(
        f"{hostile_served.server.url}/search",
        json={"query": "quokka document deleted", "k": 10},
        headers=hostile_served.server.auth,
        timeout=60,
    )
    assert r.status_code == 200
    assert not {x["item_id"] for x in r.json()["results"]} & set(hostile_served.doomed_items)
    for item in hostile_served.doomed_items:
        assert _get(hostile_served, f"/items/{item}/image").status_code == 404


def test_status_prints_names_escaped(hostile_served: HostileServed) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mmrag_assets.cli", "status", *hostile_served.cfg.overrides],
        capture_output=True,
        timeout=300,
        check=False,
    )
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, r.stderr
    line = next(x for x in out.splitlines() if "junk" in x)
    assert line.strip().startswith("names/junk\\xfe\\n\\u202etxt.pdf: "), line
    for ch in HIDDEN:
        assert ch not in out.replace("\n", ""), ch
    assert len(out.splitlines()) == len(out.split("\n")) - (1 if out.endswith("\n") else 0)


@pytest.mark.parametrize("name", ["call.shtml", "call.js", "call.svg"])
def test_a_recording_is_served_as_what_its_bytes_are(hostile_served: HostileServed, name: str) -> None:
    """A WAV named .html / .js / .svg was served as text/html, text/javascript, image/svg+xml (a
    .html is a document format since issue 24: named so, the WAV is quarantined as a mismatch)."""
    hit = _hit(hostile_served, "reset your wireless router reset button", f"hostile/{name}")
    assert hit["source"] == f"hostile/{name}" and hit["media_type"] == "audio/wav"
    for r in (
        _get(hostile_served, hit["media_url"]),
        httpx.head(
            hostile_served.server.url + hit["media_url"], headers=hostile_served.server.auth, timeout=60
        ),
    ):
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
        assert "content-disposition" not in r.headers  # audio/wav plays inline


def test_a_wav_named_html_is_quarantined_as_a_mismatch(hostile_served: HostileServed) -> None:
    from mmrag_assets.lib.store.catalog import Catalog

    rows = Catalog(hostile_served.cfg.catalog_url).query(
        "SELECT source, reason FROM quarantine WHERE stage = 'scan'"
    )
    reasons = {r["source"]: r["reason"] for r in rows}
    assert (
        "extension .html says" in reasons["hostile/call.html"]
        and "content is" in reasons["hostile/call.html"]
    )
    body = {
        "query": "reset your wireless router reset button",
        "filters": {"source_prefix": "hostile/call.html"},
    }
    r = httpx.post(
        f"{hostile_served.server.url}/search", json=body, headers=hostile_served.server.auth, timeout=60
    )
    assert r.status_code == 200 and r.json()["results"] == []


def test_a_recording_no_browser_plays_is_an_attachment(hostile_served: HostileServed) -> None:
    hit = _hit(hostile_served, "reset your wireless router reset button", "hostile/talk.mka")
    r = _get(hostile_served, hit["media_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "audio/x-matroska"
    assert r.headers["content-disposition"] == "attachment" and hit["media_type"] == "audio/x-matroska"


def test_page_images_carry_the_file_policy(hostile_served: HostileServed) -> None:
    hit = _hit(hostile_served, "aardvark procedure")
    for url in (hit["image_url"], hit["thumbnail_url"]):
        r = _get(hostile_served, url)
        assert r.status_code == 200 and r.headers["content-type"] in ("image/png", "image/jpeg")
        assert (
            "sandbox" in r.headers["content-security-policy"]
            and r.headers["x-content-type-options"] == "nosniff"
        )


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_a_polyglot_opened_in_the_browser_runs_nothing(hostile_served: HostileServed) -> None:
    """call.shtml opened as a page (logged in, as a victim would be): before issue 21 it was HTML
    in the server's origin and its <script src> ran call.js, served as JavaScript."""
    html = _hit(hostile_served, "reset your wireless router reset button", "hostile/call.shtml")
    origin = hostile_served.server.url
    with browser_page(origin) as (page, external, _errors):
        page.goto(origin + "/")
        assert (
            page.evaluate(
                f"async () => (await fetch('/auth', {{method: 'POST', headers: {{'Content-Type': "
                f"'application/json'}}, body: JSON.stringify({{token: {TOKEN!r}}})}})).status"
            )
            == 204
        )
        for url in (html["media_url"], f"/items/{hostile_served.js_item}/media"):
            page.goto(origin + url)
            page.wait_for_timeout(1500)  # time for any script to run: there must be none
            assert not page.title().startswith("pwned"), (url, page.title())
            assert page.evaluate("() => document.querySelector('#x')") is None  # not parsed as HTML
        assert not external
