"""The HTTP API of a real `mmrag serve` process: search (GET = POST), result links, page images,
recordings with HTTP Range, readiness, and docs and page that load nothing from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import TOKEN, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE_Q = "what does inverter error code E04 mean"
AUDIO_Q = "never unplug the router during the firmware update"


def _search(server: Server, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/search", json=body, headers=server.auth, timeout=60)


def _segment(server: Server) -> dict:
    r = _search(
        server, {"query": AUDIO_Q, "k": 5, "filters": {"modality": "segment", "source_prefix": "audio/"}}
    )
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def test_search_needs_the_token(server: Server) -> None:
    url = f"{server.url}/search"
    assert httpx.post(url, json={"query": "inverter"}, timeout=30).status_code == 401
    for wrong in (
        b"Bearer nope",
        b"Bearer " + "s3cret-tökén".encode("latin-1"),
        b"Bearer \xff\xfe",
        b"Basic Zm9vOmJhcg==",
    ):
        r = httpx.post(url, json={"query": "inverter"}, headers={"Authorization": wrong}, timeout=30)
        assert r.status_code == 401, (wrong, r.text)
    assert httpx.post(url, json={"query": "inverter"}, headers=server.auth, timeout=30).status_code == 200


def test_search_results_carry_links_and_why_they_matched(server: Server) -> None:
    r = _search(server, {"query": PAGE_Q, "k": 3})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["modality"] == "page" and top["page"] == 4
    assert top["thumbnail_url"] == f"/items/{top['item_id']}/image?thumbnail=true"
    assert top["image_url"] == f"/items/{top['item_id']}/image" and top["media_url"] is None
    ch = top["channels"]
    assert ch["first_stage"]["name"] == "plaid" and ch["first_stage"]["rank"] >= 1
    assert ch["lexical"]["rank"] >= 1 and ch["maxsim"] > 0
    img = httpx.get(server.url + top["image_url"], headers=server.auth, timeout=30)
    assert img.status_code == 200 and img.content[:4] == b"\x89PNG"
    thumb = httpx.get(server.url + top["thumbnail_url"], headers=server.auth, timeout=30)
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    seg = _segment(server)
    assert seg["start_s"] > 0, "short windows: the firmware sentence is not in the first window"
    assert seg["media_url"] == f"/items/{seg['item_id']}/media" and seg["media_type"] == "audio/ogg"
    assert seg["thumbnail_url"] is None and seg["image_url"] is None


def test_get_search_returns_the_same_json_as_post(server: Server) -> None:
    post = _search(
        server,
        {"query": "revenue by region", "k": 4, "filters": {"modality": "page", "source_prefix": "reports/"}},
    ).json()
    get = httpx.get(
        f"{server.url}/search",
        params={"q": "revenue by region", "k": 4, "modality": "page", "source": "reports/"},
        headers=server.auth,
        timeout=30,
    )
    assert get.status_code == 200, get.text
    got = get.json()
    assert set(got) == set(post) and got["results"] == post["results"] and post["results"]
    assert all(r["source"].startswith("reports/") and r["modality"] == "page" for r in got["results"])
    assert {k: v for k, v in got.items() if k != "timings_ms"} == {
        k: v for k, v in post.items() if k != "timings_ms"
    }


def test_media_serves_byte_ranges(server: Server, web_indexed) -> None:
    seg = _segment(server)
    url, data = server.url + seg["media_url"], (web_indexed.corpus_root / seg["source"]).read_bytes()
    n = len(data)

    def get(range_: str | None, **headers: str) -> httpx.Response:
        h = {**server.auth, **headers, **({"Range": range_} if range_ else {})}
        return httpx.get(url, headers=h, timeout=30)

    full = get(None)
    assert full.status_code == 200 and full.content == data and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"].startswith("audio/ogg")
    first = get("bytes=0-99")
    assert (
        first.status_code == 206
        and first.headers["content-range"] == f"bytes 0-99/{n}"
        and first.content == data[:100]
    )
    suffix = get("bytes=-500")
    assert (
        suffix.status_code == 206
        and suffix.headers["content-range"] == f"bytes {n - 500}-{n - 1}/{n}"
        and suffix.content == data[-500:]
    )
    tail = get(f"bytes={n - 10}-")
    assert tail.status_code == 206 and tail.content == data[-10:]
    clipped = get(f"bytes=10-{n * 2}")  # a last-pos past the end is clipped to the end
    assert clipped.status_code == 206 and clipped.content == data[10:]
    multi = get("bytes=0-9,20-29")
    assert multi.status_code == 206 and multi.headers["content-type"].startswith("multipart/byteranges")
    assert data[:10] in multi.content and data[20:30] in multi.content
    for unsatisfiable in (f"bytes={n}-", f"bytes={n + 100}-{n + 200}", "bytes=-0"):
        r = get(unsatisfiable)
        assert r.status_code == 416, unsatisfiable
        assert r.headers["content-range"] == f"bytes */{n}"
    assert get("bytes=abc").status_code == 400
    assert get("lines=0-1").status_code == 400
    stale = get("bytes=0-9", **{"If-Range": '"not-the-etag"'})  # the file changed: whole file
    assert stale.status_code == 200 and stale.content == data
    head = httpx.head(url, headers=server.auth, timeout=30)
    assert head.status_code == 200 and int(head.headers["content-length"]) == n and not head.content
    assert httpx.get(url, timeout=30).status_code == 401  # the token guards recordings too


def test_media_is_only_for_recordings(server: Server) -> None:
    page = _search(server, {"query": PAGE_Q, "k": 1}).json()["results"][0]
    r = httpx.get(f"{server.url}/items/{page['item_id']}/media", headers=server.auth, timeout=30)
    assert r.status_code == 404 and "not part of a recording" in r.json()["detail"]
    assert (
        httpx.get(f"{server.url}/items/deadbeef:t0-1000/media", headers=server.auth, timeout=30).status_code
        == 404
    )


def test_ocr_boxes_of_an_image_hit(server: Server, web_indexed) -> None:
    """The diagram's labels were read by OCR at ingest; its result links the word boxes (in the
    stored image's pixels), a page with a text layer links none, an unknown item is a 404."""
    from PIL import Image

    r = _search(
        server,
        {
            "query": "modem router switch",
            "k": 5,
            "filters": {"modality": "image", "source_prefix": "images/"},
        },
    )
    hit = next(x for x in r.json()["results"] if "diagram" in x["source"])
    assert hit["boxes_url"] == f"/items/{hit['item_id']}/boxes"
    got = httpx.get(server.url + hit["boxes_url"], headers=server.auth, timeout=30)
    assert got.status_code == 200, got.text
    body = got.json()
    img = Image.open(next(web_indexed.pages_dir.glob(f"{hit['item_id'].split(':')[0]}/*/p0001.png")))
    assert (body["image_width"], body["image_height"]) == img.size
    words = {b["text"].lower() for b in body["boxes"]}
    assert {"modem", "router", "switch"} <= words
    assert all(
        0 <= b["x0"] < b["x1"] <= img.width and 0 <= b["y0"] < b["y1"] <= img.height for b in body["boxes"]
    )
    page = _search(server, {"query": PAGE_Q, "k": 1}).json()["results"][0]
    assert page["boxes_url"] is None  # the manual's pages have a text layer: no OCR, no boxes
    assert (
        httpx.get(f"{server.url}/items/{page['item_id']}/boxes", headers=server.auth, timeout=30).status_code
        == 404
    )
    assert (
        httpx.get(f"{server.url}/items/deadbeef:1/boxes", headers=server.auth, timeout=30).status_code == 404
    )
    assert httpx.get(server.url + hit["boxes_url"], timeout=30).status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "../catalog.duckdb",
        "..%2Fcatalog.duckdb",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "../../../../etc/passwd",
        "%2Fetc%2Fpasswd",
        "....//....//etc/passwd",
        "../lancedb",
        "escape.png",
    ],
)
def test_page_paths_cannot_leave_the_pages_folder(server: Server, web_indexed, path: str) -> None:
    link = web_indexed.pages_dir / "escape.png"  # a symlink inside pages/ that points outside it
    if not link.is_symlink():
        link.symlink_to(web_indexed.catalog_path)
    r = httpx.get(f"{server.url}/pages/{path}", headers=server.auth, timeout=30)
    assert r.status_code == 404, r.text
    assert str(web_indexed.storage_root) not in r.text


def test_page_files_by_stored_path(server: Server, web_indexed) -> None:
    some = min(web_indexed.pages_dir.glob("*/*/p0001.png"))
    rel = some.relative_to(web_indexed.pages_dir).as_posix()
    r = httpx.get(f"{server.url}/pages/{rel}", headers=server.auth, timeout=30)
    assert r.status_code == 200 and r.content == some.read_bytes()


def test_readiness_and_health(server: Server) -> None:
    ready = httpx.get(f"{server.url}/readyz", timeout=30)
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "ready" and body["auth"] is True
    assert body["index"]["items"] > 0 and body["load_s"] > 0 and body["error"] is None
    assert httpx.get(f"{server.url}/healthz", timeout=30).json() == {"status": "ok", "ready": True}


def test_readiness_says_what_failed(tmp_path: Path) -> None:
    """No index under the storage root: the server starts, /readyz is 503 with the reason (and
    no absolute path), searches are 503."""
    from tests.web.conftest import start_server, stop_server

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    s = start_server(
        [f"corpus.root={corpus}", f"storage.root={tmp_path / 'storage'}", "model=lite"],
        tmp_path / "log",
        ready=False,
    )
    try:
        for _ in range(200):
            body = httpx.get(f"{s.url}/readyz", timeout=30).json()
            if body["status"] != "loading":
                break
        assert body["status"] == "failed" and "mmrag index" in body["error"], body
        assert str(tmp_path) not in body["error"]
        r = httpx.get(f"{s.url}/search", params={"q": "inverter"}, timeout=30)
        assert (
            r.status_code == 503 and "could not be loaded" in r.json()["detail"] and r.headers["retry-after"]
        )
        assert httpx.get(f"{s.url}/", timeout=30).status_code == 200  # the page still loads and says so
    finally:
        stop_server(s)


URL = re.compile(r"""(?:src|href|action)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""", re.IGNORECASE)


def _referenced(html: str) -> list[str]:
    return [a or b for a, b in URL.findall(html)]


def test_page_and_docs_reference_no_external_url(server: Server) -> None:
    page = httpx.get(f"{server.url}/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    css = httpx.get(f"{server.url}/static/app.css", timeout=30).text
    js = httpx.get(f"{server.url}/static/app.js", timeout=30).text
    assert "://" not in page.text and "://" not in css
    assert set(re.findall(r"[a-z]+://[^\s\"'`)]+", js)) == {
        "http://www.w3.org/2000/svg"
    }  # an XML namespace, never fetched
    for path in ("/docs", "/redoc"):
        r = httpx.get(server.url + path, timeout=30)
        assert r.status_code == 200 and "://" not in r.text, path
        refs = [u for u in _referenced(r.text) if not u.startswith("data:")]
        assert refs, path
        for ref in refs:  # every asset it names is served by this server
            assert ref.startswith("/"), (path, ref)
            assert httpx.get(server.url + ref, timeout=30).status_code == 200, (path, ref)
        assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert "/search" in httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": ""}, 400),
        ({"query": "   \n\t "}, 400),
        ({"query": "x" * 20_001}, 400),
        ({"query": "ok", "k": 0}, 422),
        ({"query": "ok", "k": -1}, 422),
        ({"query": "ok", "k": 1001}, 422),
        ({"query": "ok", "k": "ten"}, 422),
        ({"query": "ok", "filters": {"modality": "hologram"}}, 422),
        ({"query": "ok", "filters": {"modality": "page'; DROP TABLE pages; --"}}, 422),
        ({"query": "ok", "filters": {"unknown": "x"}}, 422),
        ({"query": "ok", "reranker": "magic"}, 422),
        ({"query": "ok", "first_stage": "nope"}, 422),
        ({"k": 3}, 422),
        ({"query": "ok", "extra": 1}, 422),
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server: Server, body: dict, status: int) -> None:
    r = _search(server, body)
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200


def test_hostile_values_are_answered(server: Server) -> None:
    sqlish = {
        "query": "inverter",
        "filters": {"source_prefix": "x' OR '1'='1", "doc_id": '"; DROP TABLE documents; --'},
    }
    r = _search(server, sqlish)
    assert r.status_code == 200 and r.json()["results"] == []
    long = _search(server, {"query": "router reset " * 800})
    assert long.status_code == 200 and any("truncated" in w for w in long.json()["warnings"])
    assert (
        httpx.get(f"{server.url}/items/deadbeef:1/image", headers=server.auth, timeout=30).status_code == 404
    )


def test_auth_endpoint_sets_a_session_cookie(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/auth", json={"token": "wrong"}).status_code == 401
        assert c.get("/search", params={"q": "inverter"}).status_code == 401
        r = c.post("/auth", json={"token": TOKEN})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
        assert "max-age=43200" in cookie  # serve.session_ttl_s: the cookie expires
        assert c.get("/search", params={"q": "inverter"}).status_code == 200
        again = c.post("/auth", json={"token": TOKEN}).cookies["mmrag_session"]
        assert again != r.cookies["mmrag_session"]  # random per login, not a function of the token
