"""What the HTTP door refuses before any handler runs, and the checks handlers share.

- :class:`GuardMiddleware` (pure ASGI): the ``Host`` allow-list and the request-body cap. A body
  is never read past ``max_body_bytes``: a larger ``Content-Length`` is refused outright, and a
  streamed (chunked) body is counted as it arrives and refused at the first byte over.
- :func:`clean_text`: every text input (query, filters, path segments) is NFC-normalised and
  refused when it holds a lone surrogate, a NUL or another control character.
- :func:`token_matches`: bearer tokens compared as bytes in constant time, so any byte string
  (non-ASCII included) is a plain mismatch, never a server error.
- :func:`scrub`: error messages lose absolute paths before they leave the server.
- :func:`check_bind`: a non-loopback address without a token is refused unless explicitly allowed.
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import json
import logging
import re
import socket
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from mmrag_assets.errors import MmragError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# C0 controls except tab, newline and carriage return, plus DEL: never meaningful in a query or a path
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ABS_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s'\"/:]+/)+[^\s'\",:)]*")


class BindRefused(MmragError, PermissionError):
    """``mmrag serve`` was asked to listen on a non-loopback address without a token."""


class TextRejected(ValueError):
    """A text input holds something no query or path may hold (pydantic turns it into a 422)."""


def clean_text(value: str, field: str, max_chars: int | None = None) -> str:
    """NFC-normalised ``value``; :class:`TextRejected` naming ``field`` for surrogates, controls
    and over-long values (the limit is checked before normalisation too, so a huge value costs
    one length check)."""
    if max_chars is not None and len(value) > max_chars:
        raise TextRejected(f"{field} is {len(value):,} characters, over the limit of {max_chars:,}")
    if _SURROGATE.search(value):
        raise TextRejected(f"{field} holds a lone surrogate (invalid Unicode); send UTF-8 text")
    if _CONTROL.search(value):
        raise TextRejected(f"{field} holds a NUL or another control character")
    value = unicodedata.normalize("NFC", value)
    if max_chars is not None and len(value) > max_chars:
        raise TextRejected(f"{field} is {len(value):,} characters, over the limit of {max_chars:,}")
    return value


def token_matches(presented: bytes, token: str) -> bool:
    """Constant-time comparison of raw bytes (``secrets.compare_digest`` on ``str`` raises
    ``TypeError`` for non-ASCII input: that was a 500 for a non-ASCII bearer token)."""
    return hmac.compare_digest(presented, token.encode("utf-8"))


def scrub(message: str, roots: Iterable[tuple[str, str]] = ()) -> str:
    """``message`` without absolute paths: known roots become their config key, any other
    absolute path ``<path>``."""
    for root, name in roots:
        if root:
            message = message.replace(root, f"<{name}>")
    return _ABS_PATH.sub("<path>", message)


def host_allowed(host_header: str | None, allowed: list[str]) -> bool:
    """Whether a ``Host`` header (``name[:port]``, ``[v6]:port``) names an allowed host.

    Hand-written because Starlette's ``TrustedHostMiddleware`` splits on the first colon, so an
    IPv6 literal such as ``[::1]:8000`` can never match its allow-list.
    """
    if not host_header:
        return False
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            return False
        name = h[1:end]
    else:
        name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    name = name.rstrip(".")
    if not name or any(c.isspace() for c in name):
        return False
    return any(pat == "*" or fnmatch.fnmatchcase(name, pat.lower().strip("[]")) for pat in allowed)


class GuardMiddleware:
    """Host allow-list and body cap, before routing; answers 400 / 413 as JSON itself. Every
    response gets ``nosniff``, ``no-referrer`` and a Content-Security-Policy (``csp`` by path or
    by a prefix ending in ``/``, else ``default_csp``) that keeps the browser from loading anything
    from another origin; a header the app set itself is kept."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: list[str],
        max_body_bytes: int,
        default_csp: str,
        csp: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)
        self.max_body = int(max_body_bytes)
        self.default_csp = default_csp
        self.csp = dict(csp or {})

    def policy(self, path: str) -> str:
        """The CSP of ``path``: an exact key of ``csp``, else the longest key ending in ``/`` that
        starts it, else ``default_csp``."""
        if path in self.csp:
            return self.csp[path]
        prefixes = [k for k in self.csp if k.endswith("/") and path.startswith(k)]
        return self.csp[max(prefixes, key=len)] if prefixes else self.default_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy(scope.get("path", "")).encode()
        inner_send = send

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", policy),
                ]
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in names),
                ]
            await inner_send(message)

        send = secured
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not host_allowed(headers.get("host"), self.allowed_hosts):
            await _json(send, 400, "Host header not allowed: add the name to serve.allowed_hosts")
            return
        if not utf8_query(scope.get("query_string", b"")):
            # the framework would decode it with replacement characters and answer a search for "���"
            await _json(send, 400, "query string is not valid UTF-8 once percent-decoded: send UTF-8 text")
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _json(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body:
                await _json(send, 413, f"request body over serve.max_body_bytes={self.max_body:,}")
                return
        elif "chunked" not in headers.get("transfer-encoding", "").lower():
            await self.app(scope, receive, send)  # no body at all
            return
        # Read (at most max_body + 1 bytes of) the body here, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _json(send, 413, f"request body over serve.max_body_bytes={self.max_body:,}")
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def utf8_query(raw: bytes) -> bool:
    """Whether every name and value of a raw query string is UTF-8 once percent-decoded."""
    from urllib.parse import unquote_to_bytes

    try:
        for part in raw.replace(b"+", b" ").split(b"&"):
            for piece in part.split(b"=", 1):
                unquote_to_bytes(piece).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, token: str | None, allow_public_without_token: bool) -> None:
    """Refuse (``BindRefused``) a non-loopback bind without a token unless explicitly allowed,
    and then say so loudly."""
    if is_loopback(host) or token:
        return
    if not allow_public_without_token:
        raise BindRefused(
            f"refusing to listen on {host} without a token: anyone who can reach this machine could "
            "read the corpus. Set serve.token=... (then send `Authorization: Bearer <token>`), or bind "
            "127.0.0.1, or pass --allow-public-without-token if the network is yours alone"
        )
    log.warning(
        "SERVING %s WITHOUT A TOKEN: every client that can reach this address can search and read the corpus",
        host,
    )
