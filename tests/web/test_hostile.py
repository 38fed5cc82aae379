"""Hostile HTTP input against a real `mmrag serve` on 127.0.0.1: one test per case of issue 11.
Each one also checks that the server is still answering afterwards."""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys

import httpx
import pytest

from tests.web.conftest import TOKEN, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ABS_PATH = re.compile(r"(?<![\w.])/(?:tmp|work|home|root|var|usr|etc|private)/")


def _raw(server: Server, request: bytes, *, read_timeout: float = 30) -> tuple[int, bytes]:
    """Send raw bytes; return (status, whole reply). For what httpx refuses to send."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout) as s:
        for i in range(0, len(request), 65536):  # stop sending once the server has answered (413)
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(request[i : i + 65536])
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                if m and len(body) >= int(m.group(1)):
                    break
    assert data, f"no reply within read_timeout={read_timeout} s"
    return int(data.split(b" ", 2)[1]), data


def _post_raw(
    server: Server, body: bytes, *, host: str | None = None, extra: bytes = b""
) -> tuple[int, bytes]:
    host_line = b"" if host is None else b"Host: " + host.encode() + b"\r\n"
    req = (
        b"POST /search HTTP/1.1\r\n" + host_line + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    return _raw(server, req)


def _alive(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=30).json()["status"] == "ok"


def _no_paths(text: str, web_indexed) -> None:
    assert str(web_indexed.storage_root) not in text and str(web_indexed.corpus_root) not in text
    assert not ABS_PATH.search(text), text


def test_body_over_the_cap_is_refused_before_it_is_read(server: Server) -> None:
    # announce 50 MB, send 1 KB: the 413 must come back without the server waiting for the rest
    head = (
        (f"POST /search HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer ").encode()
        + TOKEN.encode()
        + (b"\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n")
    )
    # no clock (issue 28): the client never sends the other 49.99 MB, so a server that waited for them
    # would never answer and the read would end empty after read_timeout
    status, reply = _raw(server, head + b"{" + b" " * 1024, read_timeout=60)
    assert status == 413 and b"max_body_bytes" in reply
    _alive(server)


def test_streamed_body_over_the_cap_is_refused(server: Server) -> None:
    def chunks():
        yield b'{"query": "'
        for _ in range(100):
            yield b"a" * 8192  # 800 KB in all, over the 256 KiB default
        yield b'"}'

    r = httpx.post(
        f"{server.url}/search",
        content=chunks(),
        headers={**server.auth, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413
    _alive(server)


def test_a_five_million_element_filter_list_costs_nothing(server: Server) -> None:
    body = json.dumps({"query": "inverter", "filters": {"doc_id": ["x"] * 5_000_000}}).encode()
    status, reply = _post_raw(server, body, host=f"127.0.0.1:{server.port}")
    # refused by its size before any JSON was parsed (a parsed list gives 422, over 64 elements); no
    # clock (issue 28): how long the refusal takes depends on the machine's load
    assert status == 413 and b"max_body_bytes" in reply
    _alive(server)


def test_filter_lists_and_strings_are_bounded(server: Server) -> None:
    too_many = httpx.post(
        f"{server.url}/search",
        json={"query": "inverter", "filters": {"source_prefix": ["a"] * 65}},
        headers=server.auth,
        timeout=30,
    )
    assert too_many.status_code == 422 and "64" in too_many.text
    too_long = httpx.post(
        f"{server.url}/search",
        json={"query": "inverter", "filters": {"source_prefix": "a" * 1025}},
        headers=server.auth,
        timeout=30,
    )
    assert too_long.status_code == 422 and "1,024" in too_long.text
    too_many_modalities = httpx.post(
        f"{server.url}/search",
        json={"query": "x", "filters": {"modality": ["page"] * 65}},
        headers=server.auth,
        timeout=30,
    )
    assert too_many_modalities.status_code == 422
    _alive(server)


@pytest.mark.parametrize(
    "raw_body",
    [
        rb'{"query": "a \ud800 b"}',  # a lone high surrogate (valid JSON, invalid Unicode)
        rb'{"query": "\udfff"}',
        rb'{"query": "inverter", "filters": {"source_prefix": "x\udc80"}}',
        rb'{"query": "inverter", "filters": {"doc_id": ["ok", "\ud83d"]}}',
        rb'{"query": "a\u0000b"}',  # NUL
        rb'{"query": "inverter", "filters": {"source_prefix": "manuals/\u0000"}}',
        rb'{"query": "bell \u0007"}',
    ],
)
def test_surrogates_and_control_characters_are_a_422(server: Server, raw_body: bytes) -> None:
    status, reply = _post_raw(server, raw_body, host=f"127.0.0.1:{server.port}")
    assert status == 422, reply
    body = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert any("surrogate" in d["msg"] or "control" in d["msg"] for d in body["detail"]), body
    _alive(server)


@pytest.mark.parametrize("raw_body", [b'{"query": "\xff\xfe"}', b'{"query": ', b"\x00\x00\x00", b'["query"]'])
def test_undecodable_bodies_are_a_4xx(server: Server, raw_body: bytes) -> None:
    status, _ = _post_raw(server, raw_body, host=f"127.0.0.1:{server.port}")
    assert status in (400, 422)
    _alive(server)


def test_unicode_is_normalised_not_refused(server: Server) -> None:
    decomposed = "re\u0301sume\u0301 revenue"  # NFD "résumé": NFC before it reaches the searcher
    r = httpx.post(
        f"{server.url}/search", json={"query": decomposed, "k": 2}, headers=server.auth, timeout=30
    )
    assert r.status_code == 200 and r.json()["query"] == "résumé revenue"


@pytest.mark.parametrize(
    "path",
    ["/pages/%00", "/pages/abc%00.png", "/items/x%00y/image", "/items/%00/media", "/search?q=a%00b"],
)
def test_nul_in_paths_and_query_strings_is_a_4xx(server: Server, path: str) -> None:
    r = httpx.get(server.url + path, headers=server.auth, timeout=30)
    assert r.status_code in (400, 422), r.text
    _alive(server)


@pytest.mark.parametrize(
    "value", ["/tmp", "../../other-store", "plaid/../../x", "/etc/passwd", "plaid\x00", "PLAID", "lance "]
)
def test_first_stage_and_reranker_are_names_never_paths(server: Server, web_indexed, value: str) -> None:
    for field in ("first_stage", "reranker"):
        r = httpx.post(
            f"{server.url}/search", json={"query": "inverter", field: value}, headers=server.auth, timeout=30
        )
        assert r.status_code == 422, (field, value, r.text)
        _no_paths(r.text, web_indexed)
    _alive(server)


def test_a_first_stage_the_index_did_not_build_is_a_422(server: Server, web_indexed) -> None:
    assert "muvera" not in web_indexed.search.prebuild  # a known strategy this index did not build
    r = httpx.post(
        f"{server.url}/search",
        json={"query": "inverter", "first_stage": "muvera"},
        headers=server.auth,
        timeout=30,
    )
    assert (
        r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "first_stage"
    )  # the schema offers only built ones
    _no_paths(r.text, web_indexed)
    ok = httpx.post(
        f"{server.url}/search",
        json={"query": "inverter", "first_stage": "plaid", "reranker": "none"},
        headers=server.auth,
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["first_stage"] == "plaid" and ok.json()["reranker"] == "none"


def test_error_messages_hold_no_absolute_path(server: Server, web_indexed) -> None:
    probes = [
        httpx.get(f"{server.url}/items/deadbeef:1/image", headers=server.auth, timeout=30),
        httpx.get(f"{server.url}/items/deadbeef:t0-1/media", headers=server.auth, timeout=30),
        httpx.get(f"{server.url}/pages/../../../etc/passwd", headers=server.auth, timeout=30),
        httpx.get(f"{server.url}/pages/nothing/here.png", headers=server.auth, timeout=30),
        httpx.post(
            f"{server.url}/search",
            json={"query": "x", "first_stage": "/etc"},
            headers=server.auth,
            timeout=30,
        ),
        httpx.post(
            f"{server.url}/search",
            content=b"{",
            headers={**server.auth, "Content-Type": "application/json"},
            timeout=30,
        ),
    ]
    for r in probes:
        assert 400 <= r.status_code < 500, r.text
        _no_paths(r.text, web_indexed)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "[::2]:8000",
        "",
        "a b",
    ],
)
def test_a_host_header_off_the_allow_list_is_refused(server: Server, host: str) -> None:
    status, reply = _raw(
        server, b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    assert status == 400, reply


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:8000", "localhost."])
def test_loopback_host_names_are_allowed(server: Server, host: str) -> None:
    status, reply = _raw(
        server, b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    assert status == 200, reply


def test_a_request_without_host_is_refused(server: Server) -> None:
    status, _ = _raw(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status == 400


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer tökén".encode(),
        "Bearer tökén".encode("latin-1"),
        b"Bearer \xff\xfe\xfd",
        b"Bearer " + TOKEN.encode()[:-1],
        b"bearer",
        b"Bearer",
        "Bearer 🔑".encode(),
        b"Bearer " + b"\xc3" * 4000,
    ],
)
def test_any_bearer_token_bytes_are_a_401_never_a_500(server: Server, authorization: bytes) -> None:
    req = (
        b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
        + authorization
        + b'\r\nContent-Type: application/json\r\nContent-Length: 19\r\nConnection: close\r\n\r\n{"query": "router"}'
    )
    status, reply = _raw(server, req)
    assert status == 401, reply
    _alive(server)


def test_the_right_non_ascii_token_is_accepted(server: Server) -> None:
    status, reply = _post_raw(server, b'{"query": "router", "k": 1}', host="127.0.0.1")
    assert status == 200, reply


def test_binding_a_public_address_without_a_token_is_refused(web_indexed) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmrag_assets.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            *web_indexed.overrides,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without a token" in lines[0]
    assert "serve.token" in lines[0] and "--allow-public-without-token" in lines[0]


@pytest.mark.parametrize(
    "path",
    [
        "/pages/" + "a" * 252 + ".png",
        "/pages/x/" + "b" * 300 + ".png",
        "/pages/" + "c" * 1000 + "/p0001.png",
        "/items/" + "d" * 300 + ":1/image",
        "/items/" + "e" * 1000 + "/media",
        "/items/" + "f" * 1000 + "/boxes",
    ],
)
def test_over_long_names_are_a_404_never_a_500(server: Server, path: str) -> None:
    """`/pages/` + a 252-character name + `.png` was a 500 (OSError: File name too long)."""
    for r in (
        httpx.get(server.url + path, headers=server.auth, timeout=30),
        httpx.head(server.url + path, headers=server.auth, timeout=30),
    ):
        assert r.status_code == 404, (path, r.status_code, r.text)
    _alive(server)


@pytest.mark.parametrize(
    "query",
    ["\u200b", "\ufeff", "\u200b\u200c\u200d\u2060", " \u200b\n\ufeff\t", "\u202e", "\u00ad", "\u3000\u2028"],
)
def test_invisible_only_queries_are_empty(server: Server, query: str) -> None:
    """Zero-width characters or a BOM alone returned 200 with ten arbitrary results."""
    post = httpx.post(f"{server.url}/search", json={"query": query}, headers=server.auth, timeout=30)
    get = httpx.get(f"{server.url}/search", params={"q": query}, headers=server.auth, timeout=30)
    for r in (post, get):
        assert r.status_code == 400, r.text
        assert "query is empty" in r.json()["detail"] and r.json()["field"] == "query"


@pytest.mark.parametrize(
    "path", ["/pages/%ED%A0%80.png", "/items/%ED%B3%BF/image", "/search?q=%ED%A0%80", "/pages/%FF%FE.png"]
)
def test_encoded_surrogates_and_bad_utf8_in_urls_are_a_4xx(server: Server, path: str) -> None:
    r = httpx.get(server.url + path, headers=server.auth, timeout=30)
    assert 400 <= r.status_code < 500, r.text
    _alive(server)
