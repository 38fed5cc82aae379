"""Connection, session and login limits of a real `mmrag serve` (issue 21). Each test connects
from its own loopback source address (127.0.0.x), so their per-client counts never mix."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.web.conftest import LIMITED_TOKEN, LIMITS, TOKEN, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _client(server: Server, source: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def _connect(server: Server, source: str) -> socket.socket:
    s = socket.socket()
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", server.port))
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return data


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` until it holds. No fixed sleep (issue 28): the server accepts and forgets
    connections on its own schedule, later on a loaded machine."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.1)


def test_half_sent_headers_are_cut_off(limited_server: Server) -> None:
    """A connection holding half a header stayed open 150 s; now it gets 408 and is closed after
    serve.header_timeout_s (2 s here). No clock: without the cut-off no reply would come and the
    socket's 30 s timeout would raise."""
    s = _connect(limited_server, "127.0.0.11")
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    reply = _read_all(s)  # returns at EOF: the server closed the connection
    assert reply.startswith(b"HTTP/1.1 408"), reply
    s.close()
    idle = _connect(limited_server, "127.0.0.11")  # a connection that sends nothing at all
    assert _read_all(idle).startswith(b"HTTP/1.1 408")
    idle.close()


def test_open_connections_per_client_are_capped(limited_server: Server) -> None:
    cap = LIMITS["max_connections_per_client"]
    held = [_connect(limited_server, "127.0.0.12") for _ in range(cap)]

    def refused() -> bool:  # until the server has counted the held ones, an extra one gets a 408
        with _connect(limited_server, "127.0.0.12") as extra:
            return _read_all(extra).startswith(b"HTTP/1.1 503")

    try:
        _until(refused, f"connection {cap + 1} from one address refused with 503")
        with _client(limited_server, "127.0.0.13") as other:  # another address is not affected
            assert other.get("/healthz").status_code == 200
    finally:
        for s in held:
            s.close()
    with _client(limited_server, "127.0.0.12") as c:  # closed connections no longer count
        _until(lambda: c.get("/healthz").status_code == 200, "a request once the held connections closed")


def test_auth_attempts_are_throttled(limited_server: Server) -> None:
    with _client(limited_server, "127.0.0.14") as c:
        codes = [
            c.post("/auth", json={"token": "guess"}).status_code
            for _ in range(LIMITS["auth_attempts_per_minute"])
        ]
        assert codes == [401] * LIMITS["auth_attempts_per_minute"]
        r = c.post("/auth", json={"token": LIMITED_TOKEN})  # even the right token, until the window moves
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60, r.text
    with _client(limited_server, "127.0.0.15") as other:
        assert other.post("/auth", json={"token": LIMITED_TOKEN}).status_code == 204


def test_sessions_expire_and_belong_to_one_token(limited_server: Server, server: Server) -> None:
    with _client(limited_server, "127.0.0.16") as c:
        assert c.post("/auth", json={"token": LIMITED_TOKEN}).status_code == 204
        cookie = c.cookies["mmrag_session"]
        assert c.get("/search", params={"q": "inverter", "k": 1}).status_code == 200
        # the same cookie at a server with another token: what changing the token does to it
        moved = httpx.get(
            f"{server.url}/search", params={"q": "inverter"}, cookies={"mmrag_session": cookie}, timeout=30
        )
        assert moved.status_code == 401 and TOKEN != LIMITED_TOKEN
        time.sleep(LIMITS["session_ttl_s"] + 1)
        r = httpx.get(
            f"{limited_server.url}/search",
            params={"q": "inverter"},
            cookies={"mmrag_session": cookie},
            timeout=30,
        )
        assert r.status_code == 401  # expired (sent by hand: the client's jar already dropped it)
