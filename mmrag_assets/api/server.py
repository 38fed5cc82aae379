"""The connection-level limits of ``mmrag serve``, which no ASGI middleware can see: a client that
sends half a request header and waits, and a client that opens connection after connection.

uvicorn has neither (its keep-alive timeout only runs between requests: a connection holding half
a header stayed open 150 s and more), so its httptools protocol is subclassed here: about 40
lines against the 560 of that protocol, which keeps all the HTTP parsing.
"""

from __future__ import annotations

import logging
from asyncio import TimerHandle, Transport
from typing import Any

log = logging.getLogger(__name__)


def _reply(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\n\r\n" + text
    )


def guarded_protocol(header_timeout_s: float, max_per_client: int) -> type:
    """An ``HttpToolsProtocol`` that closes a connection whose request headers are not complete
    ``header_timeout_s`` after it opened (or after its next request began), with a 408, and refuses
    a client's connection beyond ``max_per_client`` open ones with a 503."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpTools(HttpToolsProtocol):
        _header_timer: TimerHandle | None = None

        def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and max_per_client > 0:
                mine = sum(
                    1 for c in list(self.connections) if getattr(c, "client", None) and c.client[0] == host
                )
                if mine > max_per_client:
                    log.warning(
                        "refused a connection from %s: %d open, serve.max_connections_per_client=%d",
                        host,
                        mine - 1,
                        max_per_client,
                    )
                    transport.write(
                        _reply(b"503 Service Unavailable", b"too many open connections from this address\n")
                    )
                    transport.close()
                    return
            self._arm()

        def _arm(self) -> None:
            if self._header_timer is None and header_timeout_s > 0:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(
                    _reply(b"408 Request Timeout", b"request headers not received in time\n")
                )
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpTools


def run(app: Any, *, host: str, port: int, header_timeout_s: float, max_per_client: int) -> None:
    import uvicorn

    uvicorn.run(
        app, host=host, port=port, log_level="info", http=guarded_protocol(header_timeout_s, max_per_client)
    )  # type: ignore[arg-type]
